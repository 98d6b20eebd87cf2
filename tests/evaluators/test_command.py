"""The evaluator contract, run through a real process sandbox in each isolation mode."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import need_engine

from cambrian.config import EvaluatorConfig, SandboxConfig
from cambrian.evaluators import CommandEvaluator, ResultError, parse_result
from cambrian.evaluators._result import MAX_DEPTH, MAX_ENTRIES
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


BEYOND = {
    "deep": ('{"score": 1, "m": ' + "[" * 40 + "]" * 40 + "}", "nested deeper than 32"),
    "large": ('{"score": 1, "m": "' + "x" * 1_000_000 + '"}', "larger than 1000000"),
    "digits": ('{"score": 1' + "0" * 5000 + "}", "an integer has too many digits"),
    "huge_score": ('{"score": 1' + "0" * 400 + "}", "score is too large for a float"),
    "huge_metric": ('{"score": 1, "metrics": {"n": 1' + "0" * 400 + "}}", "metrics.n is too"),
    "metric_name": ('{"score": 1, "metrics": {"' + "k" * 201 + '": 1}}', "name longer than 200"),
    "feature_name": ('{"score": 1, "features": {"' + "k" * 201 + '": 1}}', "name longer than"),
    "metric_value": ('{"score": 1, "metrics": {"a": "' + "x" * 10_000 + '"}}', "longer than 10000"),
    "artifacts": (
        json.dumps({"score": 1, "artifacts": {str(i): "" for i in range(1001)}}),
        "'artifacts' has 1001 entries, at most 1000",
    ),
}


@pytest.mark.parametrize("case", sorted(BEYOND))
def test_parse_result_bounds(case: str) -> None:
    text, reason = BEYOND[case]
    with pytest.raises(ResultError, match=reason):
        parse_result(text)


def test_parse_result_at_its_bounds() -> None:
    # MAX_DEPTH levels counting the result and metrics objects; brackets in strings are text.
    nested = json.loads("[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2))
    text = json.dumps({"score": 1, "metrics": {"s": "[[[[" * 100, "d": nested}})
    assert parse_result(text)["metrics"]["s"].startswith("[[[[")
    wide = {"score": 1, "metrics": {f"m{i}": i for i in range(MAX_ENTRIES)}}
    assert len(parse_result(json.dumps(wide))["metrics"]) == MAX_ENTRIES


def test_a_huge_result_file_fails_its_candidate(sandbox, tmp_path: Path) -> None:
    cmd = (
        "python -c \"import json, os; open(os.environ['CAMBRIAN_RESULT'], 'w').write("
        "json.dumps({'score': 1, 'metrics': {f'm{i}': i for i in range(10**6)}}))\""
    )
    evaluation = _evaluate(sandbox, tmp_path, cmd)
    assert evaluation.status is EvalStatus.ERROR
    assert evaluation.reason == "result is larger than 1000000 characters"


def test_a_module_candidate_code_writes_into_the_work_dir_fails_it(sandbox, tmp_path: Path) -> None:
    (tmp_path / "solve.py").write_text("open('json.py', 'w').write('SCORE = 99')\n")
    forge = "$CAMBRIAN_RUN python solve.py; echo '{\"score\": 1}'"
    evaluation = _evaluate(sandbox, tmp_path, forge)
    assert evaluation.status is EvalStatus.ERROR
    assert evaluation.reason.startswith("candidate code created 'json.py' in the work dir")
    (tmp_path / "json.py").unlink()
    (tmp_path / "solve.py").write_text("open('notes.txt', 'w').write('data')\n")
    assert _evaluate(sandbox, tmp_path, forge).ok  # other files are the candidate's own


def test_the_evaluator_reads_no_user_site_and_no_cached_bytecode(sandbox, tmp_path: Path) -> None:
    check = """python -c "import sys, json; print(json.dumps({'score': 1, 'metrics': {
'user_site': int(sys.flags.no_user_site), 'prefix': int(sys.pycache_prefix is not None)}}))" """
    evaluation = _evaluate(sandbox, tmp_path, check.replace("\n", ""))
    assert evaluation.ok and evaluation.metrics == {"user_site": 1.0, "prefix": 1.0}


def test_candidate_marked_lines_never_count_as_the_result() -> None:
    from cambrian.evaluators._result import find_result_text

    out = '{"score": 1}\n[candidate] x\r{"score": 99}\n[candidate] {"score": 98}\n'
    assert find_result_text(None, out) == '{"score": 1}'
    assert find_result_text(None, 'a\r{"score": 2}\n') == 'a\r{"score": 2}'  # one line
