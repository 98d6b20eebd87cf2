"""Acceptance and search provenance in `cambrian run`, `status` and `show` (real CLI runs)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

from conftest import cambrian_cmd, scrubbed_env

from cambrian.llm import ScriptedLLMServer, replay

DIFF_ONLY = ("operators.region=0", "operators.rewrite=0", "operators.crossover=0")
PROSE = "I would rather not change anything."
REPLIES = [
    "solve.py\n<<<<<<< SEARCH\nWIDTH = 0.5\n=======\nWIDTH = 0.6\n>>>>>>> REPLACE\n",
    PROSE,  # no edit: rejected
    "solve.py\n<<<<<<< SEARCH\nHEIGHT = 0.5\n=======\nHEIGHT = 0.6\n>>>>>>> REPLACE\n",
    "solve.py\n<<<<<<< SEARCH\nDEPTH = 3\n=======\nDEPTH = 4\n>>>>>>> REPLACE\n",  # not found
]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        cambrian_cmd(*args), capture_output=True, text=True, env=scrubbed_env(), timeout=240
    )


def _run(task: Path, run_dir: Path, replies: list[str], *sets: str) -> subprocess.CompletedProcess:
    settings = ("prompt.repair_turns=0", "run.proposal_concurrency=1", *DIFF_ONLY, *sets)
    with ScriptedLLMServer(replay(replies)) as server:
        args = ["run", str(task), "--run-dir", str(run_dir), "--sandbox", "process"]
        args += ["--model", "openai/scripted", "--api-base", server.url]
        done = _cli(*args, *(part for s in settings for part in ("--set", s)))
    assert done.returncode == 0, done.stderr
    return done


def _ids(run_dir: Path, status: str) -> list[str]:
    db = sqlite3.connect(run_dir / "archive.db")
    query = "select id from programs where status = ? and parent_id is not null order by seq"
    return [row[0] for row in db.execute(query, (status,))]


def test_acceptance_operators_and_replies(scaffold_task: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # Four replies, one proposal each: two become candidates, two are rejected.
    done = _run(scaffold_task, run_dir, REPLIES, "run.iterations=10", "run.max_proposals=4")
    assert "stopped: max_proposals" in done.stdout
    assert "acceptance 50% (2 of 4 replies), 0 duplicates" in done.stdout
    assert "operator diff: 4 children, 2 accepted, 2 improved" in done.stdout
    stats = json.loads(_cli("status", "--run-dir", str(run_dir), "--json").stdout)
    assert (stats["replies"], stats["accepted"], stats["acceptance"]) == (4, 2, 0.5)
    assert stats["duplicates"] == 0 and stats["stopped_by_stage"] == {}
    diff = stats["operators"]["diff"]
    assert list(stats["operators"]) == ["diff"]
    assert (diff["children"], diff["accepted"], diff["improved"]) == (4, 2, 2)
    assert diff["improved_share"] == 0.5
    text = _cli("status", "--run-dir", str(run_dir)).stdout
    assert "  acceptance   50% (2 of 4 replies), 0 duplicates" in text
    assert [line.split() for line in text.splitlines() if line.startswith("  diff ")] == [
        ["diff", "4", "2", "2", "50%"]
    ]
    assert "stopped " not in text  # no cascade, no stage stops
    rejected = _ids(run_dir, "rejected")
    assert len(rejected) == 2
    shown = _cli("show", rejected[0], "--run-dir", str(run_dir)).stdout
    assert "status rejected" in shown and "operator diff" in shown
    assert shown.rstrip().endswith(f"Reply:\n{PROSE}")  # the reply explains the rejection
    accepted = _ids(run_dir, "evaluated")[0]
    shown = _cli("show", accepted, "--run-dir", str(run_dir)).stdout
    assert "edit kind diff  templates default" in shown and "stage 1" in shown
    # the reply comes after the diff
    assert shown.index("diff against parent:") < shown.index("Reply:\nsolve.py\n<<<<<<< SEARCH")


CASCADE = """
[[evaluator.stages]]
command = "python evaluate.py"
min_score = 0.2
[[evaluator.stages]]
command = "python evaluate.py"
"""


def test_status_counts_stops_by_stage(scaffold_task: Path, tmp_path: Path) -> None:
    config = scaffold_task / "cambrian.toml"
    text = config.read_text().replace('command = "python evaluate.py"\n', "")
    config.write_text(text + CASCADE)
    worse = "solve.py\n<<<<<<< SEARCH\nHEIGHT = 0.5\n=======\nHEIGHT = 0.1\n>>>>>>> REPLACE\n"
    run_dir = tmp_path / "run"
    _run(scaffold_task, run_dir, [worse], "run.iterations=1")  # 0.05 < 0.2: stopped at stage 1
    stats = json.loads(_cli("status", "--run-dir", str(run_dir), "--json").stdout)
    assert stats["stopped_by_stage"] == {"1": 1}
    assert "  stopped      stage 1: 1" in _cli("status", "--run-dir", str(run_dir)).stdout
    (child,) = _ids(run_dir, "failed")
    shown = _cli("show", child, "--run-dir", str(run_dir)).stdout
    assert "evaluation stopped" in shown and "stage 1" in shown
