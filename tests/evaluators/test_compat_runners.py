"""The runner scripts, run through the real bubblewrap sandbox on the example tasks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import need_engine
from fixtures_compat import copy_task

from cambrian.config import SandboxConfig, build_config
from cambrian.evaluators import CommandEvaluator
from cambrian.evaluators.compat import PRIVATE_METRICS, RUNNER_FILE, CompatEvaluator, detect_task
from cambrian.sandbox import ProcessSandbox, make_limits
from cambrian.types import EvalStatus, Evaluation


@pytest.fixture(scope="module")
def sandbox():
    need_engine(shutil.which("bwrap") is not None, "bubblewrap")
    box = ProcessSandbox(SandboxConfig(memory_mb=1024), isolation="bwrap")
    yield box
    box.close()


def _evaluate(sandbox, task: Path) -> Evaluation:
    found = detect_task(task)
    assert found is not None
    config = build_config(found.config).evaluator
    limits = make_limits(SandboxConfig(memory_mb=1024), 30)
    evaluator = CompatEvaluator(config.adapter, CommandEvaluator(config, sandbox, limits))
    protected = [p.name for p in task.iterdir() if p.name != found.config["task"]["editable"][0]]
    return evaluator.evaluate(task, protected)


def test_openevolve_result_metrics_features_feedback(sandbox, tmp_path: Path) -> None:
    evaluation = _evaluate(sandbox, copy_task("openevolve_point", tmp_path / "t"))
    assert evaluation.ok, evaluation.reason + evaluation.output_tail
    closeness = 1 / (1 + (2.0**2 + 0.5**2) ** 0.5)
    # no combined_score: the mean of the numeric metrics that are not feature dimensions
    assert evaluation.score == pytest.approx((closeness + 1.0) / 2)
    assert evaluation.metrics["spread"] == 0.5 and evaluation.features == {"spread": 0.5}
    assert "away from the target" in evaluation.artifacts["hint"]
    assert (tmp_path / "t" / RUNNER_FILE).is_file()


def test_openevolve_cascade_stops_below_threshold(sandbox, tmp_path: Path) -> None:
    task = copy_task("openevolve_point", tmp_path / "t")
    program = task / "initial_program.py"
    program.write_text(program.read_text().replace("X = 1.0", "X = 12.0"))
    evaluation = _evaluate(sandbox, task)
    assert evaluation.status is EvalStatus.STOPPED and not evaluation.ok
    assert (evaluation.stage, evaluation.score) == (1, 0.0)
    assert evaluation.metrics == {"valid": 0.0, "stage1_score": 0.0}  # stage 2 never ran
    assert "stopped at stage 1 of 2: score 0 is below min_score 0.5" in evaluation.reason


def test_openevolve_cascade_passes_to_stage_2(sandbox, tmp_path: Path) -> None:
    evaluation = _evaluate(sandbox, copy_task("openevolve_point", tmp_path / "t"))
    assert evaluation.ok and evaluation.stage == 2
    assert evaluation.metrics["stage1_score"] == 1.0
    assert evaluation.score == evaluation.metrics["stage2_score"]


def test_legacy_cascade_flag_still_runs_the_whole_cascade(sandbox, tmp_path: Path) -> None:
    task = copy_task("openevolve_point", tmp_path / "t")
    program = task / "initial_program.py"
    program.write_text(program.read_text().replace("X = 1.0", "X = 12.0"))
    # a cambrian.toml written before stages existed calls the runner with --cascade
    command = "python .cambrian_runner.py --program initial_program.py --cascade 0.5"
    config = build_config({"evaluator": {"command": command, "adapter": "openevolve"}})
    limits = make_limits(SandboxConfig(memory_mb=1024), 30)
    inner = CommandEvaluator(config.evaluator, sandbox, limits)
    evaluation = CompatEvaluator("openevolve", inner).evaluate(task, ["evaluator.py"])
    assert evaluation.ok and evaluation.metrics == {"valid": 0.0}
    assert "stopped after stage 1" in evaluation.artifacts["cascade"]


def test_openevolve_evaluator_error_is_a_failed_evaluation(sandbox, tmp_path: Path) -> None:
    task = copy_task("openevolve_point", tmp_path / "t")
    (task / "initial_program.py").write_text("def solve(:\n")
    evaluation = _evaluate(sandbox, task)
    assert evaluation.status is EvalStatus.ERROR
    assert "SyntaxError" in evaluation.output_tail


def test_candidate_cannot_rewrite_the_runner(sandbox, tmp_path: Path) -> None:
    task = copy_task("openevolve_point", tmp_path / "t")
    program = task / "initial_program.py"
    hack = "try:\n    open('.cambrian_runner.py', 'a').write('#')\nexcept OSError:\n    pass\n"
    program.write_text(hack + program.read_text())
    evaluation = _evaluate(sandbox, task)
    assert evaluation.ok  # the write was refused: the runner is mounted read-only
    assert (task / RUNNER_FILE).read_bytes().endswith(b"sys.exit(main())\n")


def test_shinka_result_keeps_private_metrics_apart(sandbox, tmp_path: Path) -> None:
    evaluation = _evaluate(sandbox, copy_task("shinka_point", tmp_path / "t"))
    assert evaluation.ok, evaluation.reason + evaluation.output_tail
    assert evaluation.score == pytest.approx(1 / (1 + 2.5))
    assert evaluation.metrics["guess"] == 1.5
    assert evaluation.metrics["execution_time_mean"] == 0.001
    assert evaluation.metrics[PRIVATE_METRICS] == {"holdout_error": 2.75}
    assert evaluation.artifacts == {"feedback": "the guess 1.5 is below target"}


def test_shinka_incorrect_program_fails_with_its_error(sandbox, tmp_path: Path) -> None:
    task = copy_task("shinka_point", tmp_path / "t")
    program = task / "initial.py"
    program.write_text(program.read_text().replace("GUESS = 1.5", "GUESS = -1.5"))
    evaluation = _evaluate(sandbox, task)
    assert evaluation.status is EvalStatus.ERROR
    assert "marked the program incorrect: guess -1.5 is negative" in evaluation.reason
