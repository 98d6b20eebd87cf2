"""End-to-end evolution runs against a real OpenAI-compatible HTTP server on loopback."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
from pathlib import Path

from conftest import cambrian_cmd, scrubbed_env

from cambrian.agent import Evolution, open_run
from cambrian.llm import ScriptedLLMServer, mutate_numbers, replay
from cambrian.types import ProgramStatus


def _run(task: Path, run_dir: Path, url: str, *overrides: str):
    ctx = open_run(
        task,
        run_dir,
        extra={"llm": {"model": "openai/scripted", "api_base": url}},
        overrides=list(overrides),
    )
    try:
        evolution = Evolution(ctx)
        reason = asyncio.run(evolution.run())
        return reason, ctx.archive.stats(), evolution
    finally:
        ctx.close()


def _git(run_dir: Path, *args: str) -> str:
    cmd = ["git", "--git-dir", str(run_dir / "lineage.git"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def test_run_reaches_iterations_with_lineage(scaffold_task: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with ScriptedLLMServer(mutate_numbers(seed=3)) as server:
        reason, stats, _ = _run(scaffold_task, run_dir, server.url, "run.iterations=8")
    assert reason == "iterations"
    assert stats["evaluated"] == 8
    assert stats["best_score"] is not None
    db = sqlite3.connect(run_dir / "archive.db")
    meta = json.loads(db.execute("select meta from runs").fetchone()[0])
    assert meta["sandbox"]["backend"] in ("process", "docker")  # recorded for reproducibility
    assert meta["base_commit"] and meta["task_dir"] == str(scaffold_task.resolve())
    db = sqlite3.connect(run_dir / "archive.db")
    rows = db.execute('select id, parent_id, "commit", status from programs').fetchall()
    evaluated = [r for r in rows if r[3] in ("evaluated", "failed") and r[1] is not None]
    assert len(evaluated) == 8
    commits = {r[0]: r[2] for r in rows}
    for program_id, parent_id, commit, _status in evaluated:
        # each candidate's git parent is its parent program's commit
        parents = _git(run_dir, "rev-list", "--parents", "-n", "1", commit).split()
        assert parents[1] == commits[parent_id]
        log = _git(run_dir, "log", "--format=%H", f"refs/cambrian/programs/{program_id}")
        assert commits[parent_id] in log.split()


def test_failing_initial_program_asks_for_repair(scaffold_task: Path, tmp_path: Path) -> None:
    solve = scaffold_task / "solve.py"
    solve.write_text(solve.read_text().replace("return WIDTH * HEIGHT", "return WIDTH * HEIGHTT"))
    fixed = (
        "solve.py\n<<<<<<< SEARCH\n    return WIDTH * HEIGHTT\n=======\n"
        "    return WIDTH * HEIGHT\n>>>>>>> REPLACE\n"
    )
    seen: list[str] = []

    def responder(messages: list[dict]) -> str:
        seen.append(messages[-1]["content"])
        return fixed

    with ScriptedLLMServer(responder) as server:
        reason, stats, _ = _run(
            scaffold_task,
            tmp_path / "run",
            server.url,
            "run.iterations=1",
            "run.proposal_concurrency=1",
        )
    assert reason == "iterations"
    assert "HEIGHTT" in seen[0] and "repair" in seen[0].lower()
    assert "NameError" in seen[0]  # the output tail of the failure is shown
    assert stats["best_score"] == 0.25


def test_bad_replies_are_rejected_as_data(scaffold_task: Path, tmp_path: Path) -> None:
    replies = [
        "I would rather not.",
        "solve.py\n<<<<<<< SEARCH\nnot in the file\n=======\nx = 1\n>>>>>>> REPLACE\n",
        "evaluate.py\n<<<<<<< SEARCH\nimport json\n=======\nimport os\n>>>>>>> REPLACE\n",
        "solve.py\n<<<<<<< SEARCH\nWIDTH = 0.5\n=======\nWIDTH = 0.75\n>>>>>>> REPLACE\n",
        # the same edit again: an exact duplicate of an archived tree
        "solve.py\n<<<<<<< SEARCH\nWIDTH = 0.5\n=======\nWIDTH = 0.75\n>>>>>>> REPLACE\n",
    ]
    with ScriptedLLMServer(replay(replies)) as server:
        reason, stats, _ = _run(
            scaffold_task,
            tmp_path / "run",
            server.url,
            "run.iterations=1",
            "run.proposal_concurrency=1",
            "run.max_proposals=5",
            "prompt.repair_turns=0",  # one reply, one proposal
        )
    assert stats["evaluated"] == 1
    assert stats["best_score"] == 0.375
    db = sqlite3.connect(tmp_path / "run" / "archive.db")
    reasons = [r[0] for r in db.execute("select reason from programs where status='rejected'")]
    assert len(reasons) == 3
    assert any("no edit" in r for r in reasons)
    assert any("not found" in r for r in reasons)
    assert any("not editable" in r for r in reasons)


def test_cli_run_status_best_show(circle_task: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = scrubbed_env()
    with ScriptedLLMServer(mutate_numbers(seed=1)) as server:
        done = subprocess.run(
            cambrian_cmd(
                "run",
                str(circle_task),
                "--iterations",
                "4",
                "--run-dir",
                str(run_dir),
                "--model",
                "openai/scripted",
                "--api-base",
                server.url,
            ),
            capture_output=True,
            text=True,
            env=env,
            timeout=240,
        )
    assert done.returncode == 0, done.stderr
    assert "best program" in done.stdout
    status = subprocess.run(
        cambrian_cmd("status", "--run-dir", str(run_dir), "--json"),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    stats = json.loads(status.stdout)
    assert stats["evaluated"] == 4
    assert stats["best_score"] >= 1.7367  # never below the initial program
    best = subprocess.run(
        cambrian_cmd("best", "--run-dir", str(run_dir)),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert stats["best_program"] in best.stdout
    show = subprocess.run(
        cambrian_cmd("show", stats["best_program"][:6], "--run-dir", str(run_dir)),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "evaluation ok" in show.stdout
    assert ProgramStatus.EVALUATED.value in show.stdout


def test_hostile_paths_in_replies_are_rejected_and_the_run_goes_on(
    scaffold_task: Path, tmp_path: Path
) -> None:
    cheat = "=======\nprint('{\"score\": 1e9}')\n>>>>>>> REPLACE\n"
    replies = [
        f"evaluate.py/__main__.py\n<<<<<<< SEARCH\n{cheat}",  # shadow the evaluator
        f"pkg/../../escape.py\n<<<<<<< SEARCH\n{cheat}",  # leave the tree
        "solve.py\n<<<<<<< SEARCH\nWIDTH = 0.5\n=======\nWIDTH = 0.75\n>>>>>>> REPLACE\n",
    ]
    with ScriptedLLMServer(replay(replies)) as server:
        reason, stats, _ = _run(
            scaffold_task,
            tmp_path / "run",
            server.url,
            "run.iterations=1",
            "run.proposal_concurrency=1",
            'task.editable=["**/*.py"]',
            'evaluator.protected=["evaluate.py"]',
            "prompt.repair_turns=0",  # one reply, one proposal
        )
    assert reason == "iterations"
    assert stats["best_score"] == 0.375  # never 1e9
    db = sqlite3.connect(tmp_path / "run" / "archive.db")
    reasons = [r[0] for r in db.execute("select reason from programs where status='rejected'")]
    assert len(reasons) == 2 and all("not editable" in r for r in reasons)
