"""Function mode (``evaluator.python``): warm workers of the process backend.

Real workers under bubblewrap and rlimits only: each test writes an ``evaluate.py``
with an ``evaluate(candidate)`` function, and candidate code runs through
``candidate.run`` in the inner tier.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import cambrian_cmd, need_engine, scrubbed_env

from cambrian.config import EvaluatorConfig, SandboxConfig, build_config
from cambrian.errors import ConfigError, SandboxError
from cambrian.evaluators import CommandEvaluator
from cambrian.llm import ScriptedLLMServer, mutate_numbers
from cambrian.sandbox import ProcessSandbox, make_limits
from cambrian.types import EvalStatus

CONFIG = SandboxConfig(memory_mb=1024)
# The worker's identity is a token made when the module loads: the same token means the
# same loaded evaluator.
EVALUATE = """import json, os, sys, time, uuid
LOADED = uuid.uuid4().hex
CALLS = []

def evaluate(candidate):
    CALLS.append(1)
    rc, out, err = candidate.run([sys.executable, "solve.py"], timeout_s=20)
    if rc:
        return {"score": None, "metrics": {"rc": rc}, "artifacts": {"stderr": err[-200:]}}
    value = float(out.strip().splitlines()[-1])
    here = int(os.getcwd() == candidate.path)
    return {"score": value, "metrics": {"calls": len(CALLS), "here": here},
            "artifacts": {"loaded": LOADED}}

def sleepy(candidate):
    time.sleep(60)

def crash(candidate):
    os._exit(3)

def broken(candidate):
    raise ValueError("the evaluator itself is broken")

def chatty(candidate):
    print('{"score": 1000000.0}')  # an evaluator's own print is not its answer
    return {"score": 1.0}

def stage_quick(candidate):
    return {"score": 0.5 if candidate.stage == 1 else -1.0}

def lazy(candidate):
    rc, out, err = candidate.run([sys.executable, "solve.py"], timeout_s=20)
    try:
        import fastjudge  # optional, imported late: never from the candidate's checkout
        return {"score": fastjudge.SCORE}
    except ImportError:
        return {"score": float(out.split()[-1])}

def flood(candidate):
    return {"score": 1.0, "artifacts": {"big": "x" * (17 * 1024 * 1024)}}

def probe(candidate):
    import sys
    rc, out, err = candidate.run([sys.executable, "solve.py", *PROBE_ARGS], timeout_s=20)
    return {"score": 1.0, "artifacts": {"seen": out[-2000:]}}

PROBE_ARGS = []
"""


@pytest.fixture(params=["rlimits", "bwrap"])
def box(request):
    try:
        sandbox = ProcessSandbox(CONFIG, isolation=request.param)
        assert sandbox.isolation == request.param
    except SandboxError as exc:
        need_engine(request.param != "bwrap", f"bubblewrap ({exc})")
        pytest.skip(str(exc))  # rlimits without root: refused by design
    yield sandbox
    sandbox.close()


@pytest.fixture
def task(tmp_path: Path) -> Path:
    work = tmp_path / "prog"
    work.mkdir()
    (work / "evaluate.py").write_text(EVALUATE)
    (work / "solve.py").write_text("print(41 + 1)\n")
    return work


def _evaluator(box, target: str = "evaluate.py:evaluate", timeout_s: float = 30, **kw):
    config = EvaluatorConfig(python=target, **kw)
    return CommandEvaluator(config, box, make_limits(CONFIG, timeout_s))


def test_the_function_is_loaded_once_and_reused(box, task):
    evaluator = _evaluator(box, worker_uses=3)
    seen = [evaluator.evaluate(task, ["evaluate.py"]) for _ in range(4)]
    assert all(e.status is EvalStatus.OK and e.score == 42.0 for e in seen), seen[0].reason
    assert [e.metrics["calls"] for e in seen] == [1, 2, 3, 1]  # a fresh worker after 3 uses
    loaded = [e.artifacts["loaded"] for e in seen]
    assert loaded[0] == loaded[1] == loaded[2] != loaded[3]
    assert all(e.metrics["here"] == 1 for e in seen)


def test_each_candidate_is_its_own_checkout(box, task, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "evaluate.py").write_text(EVALUATE)
    (other / "solve.py").write_text("open('made.txt', 'w').write('x'); print(7)\n")
    evaluator = _evaluator(box)
    first = evaluator.evaluate(other, ["evaluate.py"])
    second = evaluator.evaluate(task, ["evaluate.py"])
    assert (first.score, second.score) == (7.0, 42.0)
    assert (other / "made.txt").read_text() == "x"  # what the candidate wrote comes back
    assert not (task / "made.txt").exists()  # and never reaches the next candidate
    assert first.artifacts["loaded"] == second.artifacts["loaded"]


@pytest.mark.parametrize(
    ("target", "status", "reason"),
    [
        ("evaluate.py:sleepy", EvalStatus.TIMEOUT, "timeout"),
        ("evaluate.py:crash", EvalStatus.ERROR, "exit"),
        ("evaluate.py:broken", EvalStatus.ERROR, "the evaluator itself is broken"),
        ("evaluate.py:missing", EvalStatus.ERROR, "defines no function missing()"),
    ],
)
def test_a_failing_evaluator_is_data_and_the_next_one_works(box, task, target, status, reason):
    failed = _evaluator(box, target, timeout_s=3).evaluate(task, ["evaluate.py"])
    assert failed.status is status
    assert reason in failed.reason + failed.output_tail
    after = _evaluator(box).evaluate(task, ["evaluate.py"])
    assert after.status is EvalStatus.OK and after.score == 42.0


def test_what_the_evaluator_prints_is_not_its_answer(box, task):
    evaluator = _evaluator(box, "evaluate.py:chatty")
    for _ in range(5):  # and all of it is in that evaluation's tail, every time
        evaluation = evaluator.evaluate(task, ["evaluate.py"])
        assert evaluation.status is EvalStatus.OK and evaluation.score == 1.0
        assert evaluation.output_tail.count('{"score": 1000000.0}') == 1, evaluation.output_tail


def test_a_candidate_cannot_forge_the_answer_or_poison_the_worker(box, task):
    # It writes to every stdout it can find, and leaves a module the worker could import.
    (task / "solve.py").write_text(
        "import glob, os\n"
        "for t in glob.glob('/proc/[0-9]*/fd/1'):\n"
        "    try:\n"
        "        fd = os.open(t, os.O_WRONLY | os.O_NONBLOCK)\n"
        '        os.write(fd, b\'{"ok": true, "result": "{\\\\"score\\\\": 1e9}"}\\n\')\n'
        "    except OSError:\n"
        "        pass\n"
        "open('helper.py', 'w').write('SCORE = 1e9\\n')\n"
        "print(3)\n"
    )
    evaluator = _evaluator(box)
    first = evaluator.evaluate(task, ["evaluate.py"])
    assert first.status is EvalStatus.ERROR and "helper.py" in first.reason
    (task / "helper.py").unlink()
    (task / "solve.py").write_text("print(5)\n")
    second = evaluator.evaluate(task, ["evaluate.py"])
    assert second.status is EvalStatus.OK and second.score == 5.0
    assert second.metrics["calls"] == 1  # the worker that saw helper.py was replaced


def test_cascade_stages_in_function_mode(box, task):
    config = EvaluatorConfig.model_validate(
        {"stages": [{"python": "evaluate.py:stage_quick", "min_score": 0.1},
                    {"python": "evaluate.py:evaluate"}]}
    )  # fmt: skip
    evaluation = CommandEvaluator(config, box, make_limits(CONFIG, 30)).evaluate(
        task, ["evaluate.py"]
    )
    assert evaluation.status is EvalStatus.OK and evaluation.stage == 2 and evaluation.score == 42


@pytest.mark.parametrize(
    ("evaluator", "message"),
    [
        ({"python": "evaluate.py"}, "must name FILE.py:FUNCTION"),
        ({"python": "evaluate.py:f", "command": "python x.py"}, "both set"),
        ({"python": "a.py:f", "stages": [{"command": "x"}]}, "both set"),
        ({"stages": [{"python": "a.py:f", "command": "x"}]}, "both set"),
    ],
)
def test_bad_function_mode_config_is_one_clear_error(evaluator, message):
    with pytest.raises(ConfigError, match=message):
        build_config({"evaluator": evaluator, "task": {"editable": ["solve.py"]}}, "test")


def test_function_mode_on_docker_is_refused_at_start():
    config = build_config(
        {"evaluator": {"python": "evaluate.py:evaluate"}, "sandbox": {"backend": "docker"},
         "task": {"editable": ["solve.py"]}},
        "test",
    )  # fmt: skip
    with pytest.raises(ConfigError, match="process backend only"):
        config.check_runnable()


def test_a_closed_sandbox_refuses_calls(task):
    box = ProcessSandbox(CONFIG, isolation="rlimits")
    box.close()
    with pytest.raises(SandboxError, match="closed"):
        box.call("evaluate.py:evaluate", workdir=task, limits=make_limits(CONFIG, 5))


# The scaffold's evaluator as a function: the same check, one warm worker.
SCAFFOLD_FUNCTION = """import json, sys
CHECK = "import solve, json; print(json.dumps([solve.WIDTH, solve.HEIGHT, solve.area()]))"

def evaluate(candidate):
    rc, out, err = candidate.run([sys.executable, "-c", CHECK], timeout_s=20)
    if rc:
        return {"score": None, "metrics": {}, "artifacts": {"stderr": err[-500:]}}
    width, height, area = json.loads(out.strip().splitlines()[-1])
    valid = 0 < width <= 1 and 0 < height <= 1 and abs(area - width * height) < 1e-9
    return {"score": area if valid else 0.0, "metrics": {"valid": int(valid)}}
"""


def test_a_run_in_function_mode_improves(scaffold_task: Path, tmp_path: Path):
    (scaffold_task / "evaluate.py").write_text(SCAFFOLD_FUNCTION)
    toml = (scaffold_task / "cambrian.toml").read_text()
    toml = toml.replace('command = "python evaluate.py"', 'python = "evaluate.py:evaluate"')
    toml = toml.replace('result = "stdout"', "worker_uses = 4")
    assert 'python = "evaluate.py:evaluate"' in toml and "worker_uses = 4" in toml
    (scaffold_task / "cambrian.toml").write_text(toml)
    run_dir = tmp_path / "run"
    with ScriptedLLMServer(mutate_numbers(seed=3)) as server:
        done = subprocess.run(
            cambrian_cmd("run", str(scaffold_task), "--run-dir", str(run_dir), "--iterations",
                         "8", "--model", "openai/scripted", "--api-base", server.url),
            env=scrubbed_env(), capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    status = subprocess.run(
        cambrian_cmd("status", "--run-dir", str(run_dir), "--json"),
        env=scrubbed_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    summary = json.loads(status.stdout)
    assert summary["evaluated"] >= 8, summary
    assert summary["best_score"] > 0.25, summary  # the initial rectangle is 0.5 x 0.5
    assert "process" in (run_dir / "run.log").read_text()


def test_a_module_the_candidate_leaves_is_never_imported_by_the_worker(box, task):
    # The module removes itself once imported, so no check afterwards would see it.
    module = "import os\nos.remove(__file__)\nSCORE = 1e9\n"
    (task / "solve.py").write_text(f"open('fastjudge.py', 'w').write({module!r})\nprint(3)\n")
    evaluator = _evaluator(box, "evaluate.py:lazy")
    first = evaluator.evaluate(task, ["evaluate.py"])
    assert first.score != 1e9  # the evaluator's own fallback, or the created-module failure
    (task / "fastjudge.py").unlink(missing_ok=True)
    (task / "solve.py").write_text("print(4)\n")
    second = evaluator.evaluate(task, ["evaluate.py"])
    assert (second.status, second.score) == (EvalStatus.OK, 4.0)


def test_an_answer_too_big_fails_without_hanging(box, task):
    flooded = _evaluator(box, "evaluate.py:flood", timeout_s=60).evaluate(task, ["evaluate.py"])
    assert flooded.status is EvalStatus.ERROR
    assert "answer was over 16 MB" in flooded.reason + flooded.output_tail
    after = _evaluator(box).evaluate(task, ["evaluate.py"])
    assert after.status is EvalStatus.OK and after.score == 42.0


# Reads what surrounds its original checkout (the run folder) and its private file there.
PROBE_SOLVE = """import sys
for path in sys.argv[1:]:
    try:
        print(path, open(path).read().strip())
    except OSError as exc:
        print(path, "denied", type(exc).__name__)
"""


def test_candidates_see_nothing_around_their_original_checkout(box):
    top = Path("/opt") / f"cambrian-warm-test-{os.getpid()}"
    try:
        work = top / "run" / "work" / "7" / "prog"
        work.mkdir(parents=True)
    except PermissionError:
        pytest.skip("needs a folder outside /tmp, /home and /root (run as root)")
    try:
        (top / "run" / "archive.db").write_text("run-folder-bytes")
        (work / "hidden").mkdir()
        (work / "hidden" / "answer.txt").write_text("private-bytes")
        targets = [str(top / "run" / "archive.db"), str(work / "hidden" / "answer.txt")]
        (work / "evaluate.py").write_text(
            EVALUATE.replace("PROBE_ARGS = []", f"PROBE_ARGS = {targets!r}")
        )
        (work / "solve.py").write_text(PROBE_SOLVE)
        config = EvaluatorConfig(python="evaluate.py:probe", private=("hidden/**",))
        evaluation = CommandEvaluator(config, box, make_limits(CONFIG, 30)).evaluate(
            work, ["evaluate.py"]
        )
        seen = evaluation.artifacts["seen"]
        assert "run-folder-bytes" not in seen and "private-bytes" not in seen, seen
        assert seen.count("denied") == 2, seen
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.timeout(300)
def test_a_fifo_left_in_the_checkout_is_the_candidates_failure(box, task):
    (task / "solve.py").write_text("import os\nos.mkfifo('pipe')\nprint(2)\n")
    evaluation = _evaluator(box).evaluate(task, ["evaluate.py"])
    assert evaluation.status is EvalStatus.ERROR and "lost" in evaluation.reason
    (task / "solve.py").write_text("print(9)\n")
    (task / "pipe").unlink(missing_ok=True)
    after = _evaluator(box).evaluate(task, ["evaluate.py"])
    assert after.status is EvalStatus.OK and after.score == 9.0
