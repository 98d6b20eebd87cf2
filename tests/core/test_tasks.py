"""The shipped tasks: each evaluator, run directly on a copy of its folder (no sandbox)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cambrian.config import load_config

TASKS = Path(__file__).resolve().parents[2] / "tasks"
BEST_FIT = -4.613600900145711  # measured once; the instances are fixed by the seed

BLOCK_START, BLOCK_END = "# EVOLVE-BLOCK-START", "# EVOLVE-BLOCK-END"


def task_copy(tmp_path: Path, name: str) -> Path:
    """A private copy of ``tasks/NAME``, so a test may rewrite its program."""
    folder = tmp_path / name
    shutil.copytree(TASKS / name, folder, ignore=shutil.ignore_patterns(".cambrian"))
    return folder


def evaluate(folder: Path) -> subprocess.CompletedProcess:
    """Run the task's evaluator as the sandbox would: ``python evaluate.py`` in its folder."""
    return subprocess.run(
        [sys.executable, "evaluate.py"], cwd=folder, capture_output=True, text=True, timeout=120
    )


def result(folder: Path) -> dict:
    """The JSON result the evaluator prints as its last stdout line (it must succeed)."""
    run = evaluate(folder)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def set_priority(folder: Path, body: str) -> None:
    """Replace the EVOLVE-BLOCK of bin_packing's solve.py with ``body``."""
    solve = folder / "solve.py"
    text = solve.read_text()
    head, rest = text.split(BLOCK_START)
    _, tail = rest.split(BLOCK_END)
    solve.write_text(f"{head}{BLOCK_START}\n{body}\n{BLOCK_END}{tail}")


@pytest.mark.parametrize("name", ["circle_packing", "bin_packing", "demo_max"])
def test_every_task_config_loads(name):
    config = load_config(TASKS / name)
    assert config.task.editable and config.evaluator.command == "python evaluate.py"


def set_constant(folder: Path, name: str, value: str) -> None:
    """Set one constant of circle_packing's solve.py."""
    solve = folder / "solve.py"
    lines = solve.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith(f"{name} = "))
    lines[at] = f"{name} = {value}\n"
    solve.write_text("".join(lines))


def test_circle_packing_initial_score(tmp_path):
    out = result(task_copy(tmp_path, "circle_packing"))
    assert out["score"] == pytest.approx(1.736792, abs=1e-6)  # two rings, radii shrunk pairwise
    assert out["metrics"]["valid"] == 1 and "radius_spread" in out["features"]


def test_circle_packing_a_wider_inner_ring_scores_higher(tmp_path):
    folder = task_copy(tmp_path, "circle_packing")
    set_constant(folder, "INNER_RADIUS", "0.3")
    assert result(folder)["score"] == pytest.approx(1.836502, abs=1e-6)


def test_circle_packing_fewer_inner_circles_leave_the_count_right(tmp_path):
    folder = task_copy(tmp_path, "circle_packing")
    set_constant(folder, "INNER", "7")  # the outer ring takes the circle: still 26
    out = result(folder)
    assert out["metrics"]["circles"] == 26 and out["score"] == pytest.approx(1.770251, abs=1e-6)


def test_circle_packing_a_ring_on_the_walls_is_invalid(tmp_path):
    folder = task_copy(tmp_path, "circle_packing")
    set_constant(folder, "OUTER_RADIUS", "0.5")  # outer centres on the walls: radius 0
    out = result(folder)
    assert out["score"] == 0 and out["metrics"]["valid"] == 0
    assert "radius" in out["artifacts"]["feedback"]


def test_bin_packing_initial_program_is_best_fit(tmp_path):
    out = result(task_copy(tmp_path, "bin_packing"))
    assert out["score"] == pytest.approx(BEST_FIT, abs=1e-9)
    metrics = out["metrics"]
    assert metrics["valid"] == 1 and metrics["bins_used"] > metrics["lower_bound"] > 0
    assert metrics["excess_pct"] == pytest.approx(-BEST_FIT, abs=1e-9)
    assert out["features"] == {"best_fit_agreement": 1.0}
    assert "excess 4.614%" in out["artifacts"]["feedback"]


def test_bin_packing_first_fit_scores_lower(tmp_path):
    folder = task_copy(tmp_path, "bin_packing")
    set_priority(folder, "def priority(item, bins):\n    return [-i for i in range(len(bins))]")
    out = result(folder)
    assert out["score"] < BEST_FIT - 0.1
    assert out["features"]["best_fit_agreement"] < 1.0


def test_bin_packing_baseline_constants_match_a_fresh_computation(tmp_path):
    spec = importlib.util.spec_from_file_location("bp_eval", TASKS / "bin_packing" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cases = module.instances()
    assert len(cases) == 5 and all(1 <= x <= 100 for items in cases for x in items)
    assert module.mean_excess(cases, module.best_fit) == pytest.approx(-BEST_FIT, abs=1e-9)
    first = module.mean_excess(cases, module.first_fit)
    assert round(first, 3) == module.FIRST_FIT_PCT and round(-BEST_FIT, 3) == module.BEST_FIT_PCT


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("def priority(item, bins):\n    raise RuntimeError('boom')", "boom"),
        ("def priority(item, bins):\n    return [0.0]", "scores for"),
        ("def priority(item, bins):\n    return [float('nan') for b in bins]", "non-finite"),
        ("priority = None", "not callable"),
    ],
)
def test_bin_packing_broken_priority_fails(tmp_path, body, message):
    folder = task_copy(tmp_path, "bin_packing")
    set_priority(folder, body)
    run = evaluate(folder)
    assert run.returncode != 0 and message in run.stderr
    assert not run.stdout.strip()


def test_bin_packing_rejects_a_forged_assignment(tmp_path):
    # A candidate that prints its own last line must still pass the replay: all in bin 0 cannot.
    folder = task_copy(tmp_path, "bin_packing")
    forged = (
        "import atexit, json\n"
        "atexit.register(lambda: print(json.dumps([[0] * 1000] * 5)))\n"
        "def priority(item, bins):\n    return [0.0] * len(bins)"
    )
    set_priority(folder, forged)
    run = evaluate(folder)
    assert run.returncode == 1 and "invalid online packing" in run.stderr
