"""Cascade evaluation: ``[[evaluator.stages]]`` run through a real process sandbox."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import tomllib
from pathlib import Path

import pytest
from conftest import cambrian_cmd, scrubbed_env

from cambrian.archive import SqlArchive, new_program_id
from cambrian.config import ArchiveConfig, CambrianConfig, SandboxConfig, build_config, dump_toml
from cambrian.errors import ConfigError
from cambrian.evaluators import CommandEvaluator
from cambrian.llm import ScriptedLLMServer, replay
from cambrian.sandbox import ProcessSandbox, make_limits
from cambrian.types import AddStatus, EvalStatus, Evaluation, Program, ProgramStatus

# Stage 2 leaves a marker, so a test can tell that it never ran.
STAGE2 = 'touch ran2; echo \'{"score": 2.0, "metrics": {"full": 1, "shared": 2}}\''


@pytest.fixture(scope="module")
def sandbox():
    isolation = "bwrap" if shutil.which("bwrap") else "rlimits"
    box = ProcessSandbox(SandboxConfig(memory_mb=512), isolation=isolation)
    yield box
    box.close()


def _quick(score: float) -> str:
    result = {"score": score, "metrics": {"quick": 1, "shared": 1}, "features": {"x": 0.5}}
    return f"echo '{json.dumps(result)}'"


def _evaluate(sandbox, workdir: Path, stages: list[dict], **evaluator) -> Evaluation:
    config = build_config({"evaluator": {"stages": stages, **evaluator}}).evaluator
    limits = make_limits(SandboxConfig(memory_mb=512), config.timeout_s)
    return CommandEvaluator(config, sandbox, limits).evaluate(workdir)


def _archive(tmp_path: Path, maximize: bool = True) -> SqlArchive:
    archive = SqlArchive(
        ArchiveConfig(), url=f"sqlite:///{tmp_path / 'a.db'}", run_id="r", maximize=maximize
    )
    archive.ensure_run({"task": "cascade"})
    return archive


def _add(archive: SqlArchive, evaluation: Evaluation) -> tuple[Program, AddStatus]:
    program = Program(id=new_program_id(), parent_id=None, island=0, generation=0, commit="c")
    archive.new_program(program)
    return program, archive.add(program, evaluation)


def test_below_min_score_stops_at_stage_1_and_takes_no_cell(sandbox, tmp_path: Path) -> None:
    stages = [{"command": _quick(0.3), "min_score": 0.5}, {"command": STAGE2}]
    evaluation = _evaluate(sandbox, tmp_path, stages)
    assert evaluation.status is EvalStatus.STOPPED and not evaluation.ok
    assert (evaluation.stage, evaluation.score) == (1, 0.3)
    assert evaluation.reason == (
        "cascade stopped at stage 1 of 2: score 0.3 is below min_score 0.5"
    )
    assert evaluation.metrics == {"quick": 1, "shared": 1, "stage1_score": 0.3}
    assert not (tmp_path / "ran2").exists()
    archive = _archive(tmp_path)
    try:
        program, placed = _add(archive, evaluation)
        assert placed is AddStatus.NOT_ADDED
        assert archive.stats()["cells"] == 0 and archive.best() is None
        stored = archive.evaluation(program.id)
        assert stored is not None
        assert (stored.status, stored.score, stored.stage) == (EvalStatus.STOPPED, 0.3, 1)
        assert archive.get(program.id).status is ProgramStatus.FAILED
        assert archive.get(program.id).reason == evaluation.reason
        # a candidate that passes every stage still takes the (empty) cell
        assert _add(archive, Evaluation(EvalStatus.OK, score=0.1))[1] is AddStatus.NEW_CELL
    finally:
        archive.close()


def test_above_min_score_reaches_stage_2_with_metrics_merged(sandbox, tmp_path: Path) -> None:
    stages = [{"command": _quick(0.5), "min_score": 0.5}, {"command": STAGE2}]
    evaluation = _evaluate(sandbox, tmp_path, stages)
    assert evaluation.ok, evaluation.reason + evaluation.output_tail
    assert (evaluation.stage, evaluation.score) == (2, 2.0)  # equal to min_score passes
    assert evaluation.metrics == {
        "quick": 1,
        "full": 1,
        "shared": 2,  # the later stage wins
        "stage1_score": 0.5,
        "stage2_score": 2.0,
    }
    assert evaluation.features == {"x": 0.5}  # kept from stage 1
    assert "[stage 1]" in evaluation.output_tail and "[stage 2]" in evaluation.output_tail
    archive = _archive(tmp_path)
    try:
        program, placed = _add(archive, evaluation)
        assert placed is AddStatus.NEW_CELL
        stored = archive.evaluation(program.id)
        assert stored is not None and stored.stage == 2 and stored.metrics["stage1_score"] == 0.5
    finally:
        archive.close()


def test_a_failing_stage_stops_the_cascade_with_its_reason(sandbox, tmp_path: Path) -> None:
    stages = [{"command": "echo boom >&2; exit 3"}, {"command": STAGE2}]
    evaluation = _evaluate(sandbox, tmp_path, stages)
    assert (evaluation.status, evaluation.stage, evaluation.score) == (EvalStatus.ERROR, 1, None)
    assert evaluation.reason == "evaluator exited with code 3: boom (stage 1 of 2)"
    assert not (tmp_path / "ran2").exists()


def test_a_stage_has_its_own_timeout(sandbox, tmp_path: Path) -> None:
    stages = [{"command": _quick(1.0)}, {"command": "sleep 30", "timeout_s": 1}]
    evaluation = _evaluate(sandbox, tmp_path, stages, timeout_s=20)
    assert (evaluation.status, evaluation.stage) == (EvalStatus.TIMEOUT, 2)
    assert evaluation.reason == "timeout: killed after 1s (stage 2 of 2)"
    assert evaluation.metrics["stage1_score"] == 1.0 and evaluation.duration_s < 10


@pytest.mark.parametrize(("quick", "stage"), [(0.7, 1), (0.5, 2), (0.2, 2)])
def test_minimize_stops_above_min_score(sandbox, tmp_path: Path, quick: float, stage: int) -> None:
    stages = [{"command": _quick(quick), "min_score": 0.5}, {"command": STAGE2}]
    evaluation = _evaluate(sandbox, tmp_path, stages, direction="minimize")
    assert evaluation.stage == stage
    if stage == 1:
        assert evaluation.status is EvalStatus.STOPPED
        assert "score 0.7 is above min_score 0.5" in evaluation.reason
    else:
        assert evaluation.ok and evaluation.score == 2.0


def test_one_script_serves_every_stage_through_cambrian_stage(sandbox, tmp_path: Path) -> None:
    (tmp_path / "evaluate.py").write_text(
        "import json, os, sys\n"
        "stage = int(os.environ['CAMBRIAN_STAGE'])\n"
        "quick = '--quick' in sys.argv\n"
        "result = {'score': stage * 10, 'metrics': {f'saw{stage}': quick}}\n"
        "open(os.environ['CAMBRIAN_RESULT'], 'w').write(json.dumps(result))\n"
    )
    stages = [
        {"command": "python evaluate.py --quick", "min_score": 5},
        {"command": "python evaluate.py", "min_score": 15},
    ]
    evaluation = _evaluate(sandbox, tmp_path, stages)
    assert evaluation.ok and (evaluation.stage, evaluation.score) == (2, 20)
    assert evaluation.metrics["saw1"] is True and evaluation.metrics["saw2"] is False
    assert not list(tmp_path.glob(".cambrian-result-*"))  # each stage's file is removed


def test_plain_command_and_a_single_gating_stage(sandbox, tmp_path: Path) -> None:
    config = build_config({"evaluator": {"command": _quick(0.3)}}).evaluator
    limits = make_limits(SandboxConfig(memory_mb=512), 20)
    plain = CommandEvaluator(config, sandbox, limits).evaluate(tmp_path)
    assert plain.ok and plain.stage == 1
    assert plain.metrics == {"quick": 1, "shared": 1}  # no stage scores without a cascade
    gated = _evaluate(sandbox, tmp_path, [{"command": _quick(0.3), "min_score": 0.5}])
    assert gated.status is EvalStatus.STOPPED and gated.stage == 1 and gated.score == 0.3


@pytest.mark.parametrize(
    ("evaluator", "needle"),
    [
        ({"command": "x", "stages": [{"command": "y"}]}, "both set"),
        ({"stages": []}, "evaluator.stages is empty"),
        ({"stages": [{"command": "y"}, {"command": "  "}]}, "stages[2] has an empty command"),
        ({"stages": [{"min_score": 1}]}, "stages[1] has an empty command"),
        ({"stages": [{"command": "y", "timeout_s": 0}]}, "timeout_s"),
        ({"stages": [{"command": "y", "min": 1}]}, "unknown config key"),
    ],
)
def test_bad_stages_are_one_line_config_errors(evaluator: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config({"evaluator": evaluator}, "cambrian.toml")
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_stages_config_is_runnable_and_round_trips() -> None:
    data = {
        "task": {"editable": ["solve.py"]},
        "evaluator": {
            "stages": [
                {"command": "python evaluate.py --quick", "min_score": 0.5},
                {"command": "e"},
            ]
        },
    }
    config = build_config(data)
    config.check_runnable()
    assert [s.min_score for s in config.evaluator.cascade()] == [0.5, None]
    assert build_config({"evaluator": {"command": "e"}}).evaluator.cascade()[0].command == "e"
    assert build_config(tomllib.loads(dump_toml(config))) == config
    with pytest.raises(ConfigError, match="evaluator.stages"):
        CambrianConfig().check_runnable()


CASCADE_TOML = """
[task]
editable = ["solve.py"]

[evaluator]
result = "stdout"
timeout_s = 30

[[evaluator.stages]]
command = "python evaluate.py --quick"
min_score = 0.2

[[evaluator.stages]]
command = "python evaluate.py"

[run]
iterations = 2
proposal_concurrency = 1
"""


def _edit(old: str, new: str) -> str:
    return f"solve.py\n<<<<<<< SEARCH\n{old}\n=======\n{new}\n>>>>>>> REPLACE\n"


def test_cambrian_run_with_a_cascade(scaffold_task: Path, tmp_path: Path) -> None:
    (scaffold_task / "cambrian.toml").write_text(CASCADE_TOML)
    run_dir, env = tmp_path / "run", scrubbed_env()
    # area 0.05 is below stage 1's min_score; area 0.375 passes both stages
    replies = [_edit("WIDTH = 0.5", "WIDTH = 0.1"), _edit("WIDTH = 0.5", "WIDTH = 0.75")]
    with ScriptedLLMServer(replay(replies)) as server:
        args = ["--run-dir", str(run_dir), "--model", "openai/scripted", "--api-base", server.url]
        done = subprocess.run(
            cambrian_cmd("run", str(scaffold_task), *args),
            capture_output=True,
            text=True,
            env=env,
            timeout=240,
        )
    assert done.returncode == 0, done.stderr
    db = sqlite3.connect(run_dir / "archive.db")
    rows = db.execute(
        "select p.id, p.status, e.status, e.stage, e.score from programs p "
        "join evaluations e on e.program_id = p.id order by p.seq"
    ).fetchall()
    assert [r[1:] for r in rows] == [
        ("evaluated", "ok", 2, 0.25),
        ("failed", "stopped", 1, pytest.approx(0.05)),
        ("evaluated", "ok", 2, 0.375),
    ]
    cells = {r[0] for r in db.execute("select program_id from cells")}
    assert rows[1][0] not in cells and rows[2][0] in cells
    status = subprocess.run(
        cambrian_cmd("status", "--run-dir", str(run_dir), "--json"),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    stats = json.loads(status.stdout)
    assert stats["evaluated"] == 2 and stats["best_score"] == 0.375
    show = subprocess.run(
        cambrian_cmd("show", rows[1][0], "--run-dir", str(run_dir)),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "evaluation stopped" in show.stdout and "stage 1 " in show.stdout
    assert "cascade stopped at stage 1 of 2" in show.stdout
