"""The evaluator contract, run through a real process sandbox in each isolation mode."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import need_engine

from cambrian.config import EvaluatorConfig, SandboxConfig
from cambrian.evaluators import CommandEvaluator, ResultError, parse_result
from cambrian.sandbox import ProcessSandbox, make_limits
from cambrian.types import EvalStatus

MODES = ["bwrap", "rlimits"]


@pytest.fixture(params=MODES)
def sandbox(request: pytest.FixtureRequest):
    if request.param == "bwrap":
        need_engine(shutil.which("bwrap") is not None, "bubblewrap")
    box = ProcessSandbox(SandboxConfig(memory_mb=512), isolation=request.param)
    yield box
    box.close()


def _evaluate(
    sandbox, workdir: Path, command: str, timeout_s: float = 20, protected=(), result="auto"
):
    config = EvaluatorConfig(command=command, timeout_s=timeout_s, result=result)
    limits = make_limits(SandboxConfig(memory_mb=512), timeout_s)
    return CommandEvaluator(config, sandbox, limits).evaluate(workdir, protected)


def test_result_file(sandbox, tmp_path: Path) -> None:
    cmd = """python -c "import json, os; open(os.environ['CAMBRIAN_RESULT'], 'w').write(
json.dumps({'score': 3, 'features': {'x': 1}, 'artifacts': {'feedback': 'fine'}}))" """
    evaluation = _evaluate(sandbox, tmp_path, cmd.replace("\n", ""))
    assert evaluation.ok and evaluation.score == 3.0
    assert evaluation.features == {"x": 1.0} and evaluation.artifacts == {"feedback": "fine"}


def test_last_stdout_line(sandbox, tmp_path: Path) -> None:
    evaluation = _evaluate(sandbox, tmp_path, """echo noise; echo '{"score": -1.5}'""")
    assert evaluation.ok and evaluation.score == -1.5
    assert "noise" in evaluation.output_tail


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("echo hello", "malformed result JSON"),
        ("true", "no result"),
        ("""echo '{"score": "high"}'""", "score must be a number"),
        ("""echo '{"metrics": {}}'""", "no 'score'"),
        ("echo boom >&2; exit 3", "evaluator exited with code 3: boom"),
    ],
)
def test_failures_are_data(sandbox, tmp_path: Path, command: str, reason: str) -> None:
    evaluation = _evaluate(sandbox, tmp_path, command)
    assert evaluation.status is EvalStatus.ERROR and not evaluation.ok
    assert reason in evaluation.reason


def test_timeout(sandbox, tmp_path: Path) -> None:
    evaluation = _evaluate(sandbox, tmp_path, "sleep 30 & sleep 30", timeout_s=1)
    assert evaluation.status is EvalStatus.TIMEOUT
    assert evaluation.duration_s < 10


def test_out_of_memory(sandbox, tmp_path: Path) -> None:
    evaluation = _evaluate(sandbox, tmp_path, "python -c 'x = bytearray(2**31)'")
    assert evaluation.status is EvalStatus.OOM


def test_candidate_cannot_modify_the_evaluator(sandbox, tmp_path: Path) -> None:
    (tmp_path / "evaluate.py").write_text("import solve\nprint('{\"score\": 1}')\n")
    (tmp_path / "solve.py").write_text(
        "try:\n    open('evaluate.py', 'w').write('print(\\'{\"score\": 1e9}\\')')\n"
        "except OSError:\n    pass\n"
    )
    evaluation = _evaluate(sandbox, tmp_path, "python evaluate.py", protected=["evaluate.py"])
    tampered = (tmp_path / "evaluate.py").read_text() != "import solve\nprint('{\"score\": 1}')\n"
    if tampered:  # only possible without bubblewrap (root ignores chmod): then detected
        assert evaluation.reason == "candidate modified evaluator file evaluate.py"
        assert not evaluation.ok
    else:
        assert evaluation.ok and evaluation.score == 1.0


def test_planted_api_key_never_reaches_the_candidate(
    sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-planted-secret-123")
    evaluation = _evaluate(sandbox, tmp_path, "env; echo '{\"score\": 0}'")
    assert evaluation.ok
    assert "CAMBRIAN_RESULT" in evaluation.output_tail
    assert "sk-planted-secret-123" not in evaluation.output_tail


FORGER = """
import glob, json, os
fake = json.dumps({"score": 1e9})
for path in [os.environ.get("CAMBRIAN_RESULT"), ".cambrian-result.json",
             *glob.glob(".cambrian-result-*.json")]:
    if path:
        open(path, "w").write(fake)
"""
HONEST_EVALUATOR = """
import subprocess, sys
subprocess.run([sys.executable, "solve.py"], env={"PATH": "/usr/bin:/bin"}, check=True,
               stdout=subprocess.DEVNULL)
print('{"score": 1}')
"""


@pytest.mark.parametrize("result", ["stdout", "auto"])
def test_candidate_cannot_forge_the_result_file(sandbox, tmp_path: Path, result: str) -> None:
    # the candidate runs in a child process without the evaluator's environment, and
    # writes every result file it can guess: the score still comes from the evaluator
    (tmp_path / "solve.py").write_text(FORGER)
    (tmp_path / "evaluate.py").write_text(HONEST_EVALUATOR)
    evaluation = _evaluate(sandbox, tmp_path, "python evaluate.py", result=result)
    assert evaluation.ok and evaluation.score == 1.0


def test_stdout_mode_gives_no_result_path(sandbox, tmp_path: Path) -> None:
    evaluation = _evaluate(
        sandbox, tmp_path, 'echo "{\\"score\\": ${#CAMBRIAN_RESULT}}"', result="stdout"
    )
    assert evaluation.ok and evaluation.score == 0.0  # $CAMBRIAN_RESULT is unset


def test_parse_result_rejects_non_finite() -> None:
    with pytest.raises(ResultError, match="finite"):
        parse_result('{"score": NaN}')
    with pytest.raises(ResultError, match="object"):
        parse_result("[1, 2]")
