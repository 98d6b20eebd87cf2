"""Meta-recommendations in real runs: reviews every interval, shown in later prompts."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import subprocess
from pathlib import Path

from conftest import cambrian_cmd, scrubbed_env

from cambrian.agent import Evolution, open_run
from cambrian.agent._meta import diff_cap, improved, split_children
from cambrian.llm import Fault, ScriptedLLMServer
from cambrian.prompts import TEMPLATE_DIR, render_meta

META_PHRASE = "You review"  # the system message of every built-in meta.j2
ADVICE = "- Raise WIDTH in small steps towards 1.0\n- Keep HEIGHT fixed while WIDTH grows"


def _widen(messages: list[dict]) -> str:
    """A proposal reply that always improves the scaffold task: a wider rectangle."""
    width = float(re.search(r"WIDTH = ([0-9.]+)", messages[1]["content"]).group(1))
    new = min(1.0, round(width + 0.02, 2))
    return f"solve.py\n<<<<<<< SEARCH\nWIDTH = {width}\n=======\nWIDTH = {new}\n>>>>>>> REPLACE\n"


def _is_meta(messages: list[dict]) -> bool:
    return META_PHRASE in messages[0]["content"]


def _responder(meta_reply: str | Fault = "<think>hmm</think>\n" + ADVICE):
    def respond(messages: list[dict]) -> str | Fault:
        return meta_reply if _is_meta(messages) else _widen(messages)

    return respond


def _run(task: Path | None, run_dir: Path, url: str, *overrides: str) -> str:
    extra = {"llm": {"model": "openai/scripted", "api_base": url}}
    settings = ['sandbox.backend="process"', "run.proposal_concurrency=1"]
    settings.append("run.eval_concurrency=1")
    ctx = open_run(task, run_dir, extra=extra, overrides=[*settings, *overrides])
    try:
        return asyncio.run(Evolution(ctx).run())
    finally:
        ctx.close()


def _db(run_dir: Path, query: str) -> list[tuple]:
    db = sqlite3.connect(run_dir / "archive.db")
    try:
        return db.execute(query).fetchall()
    finally:
        db.close()


def test_reviews_every_interval_and_feed_later_prompts(scaffold_task: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    with ScriptedLLMServer(_responder(), record=True) as server:
        reason = _run(scaffold_task, run_dir, server.url, "run.iterations=6", "meta.interval=2")
        bodies = server.bodies
    assert reason == "iterations"
    notes = _db(run_dir, "select at_evaluated, text from meta_notes order by id")
    assert [at for at, _ in notes] == [2, 4, 6]
    assert all(text == ADVICE for _, text in notes)  # the thinking section is stripped
    calls = _db(run_dir, "select ok from llm_calls where purpose = 'meta'")
    assert calls == [(1,), (1,), (1,)]
    meta_prompts = [b["messages"] for b in bodies if _is_meta(b["messages"])]
    assert len(meta_prompts) == 3
    first = meta_prompts[0][1]["content"]
    assert "improved on their parent" in first and "+WIDTH = " in first  # a diff is shown
    assert "Your previous recommendations" in meta_prompts[1][1]["content"]
    # the proposals after the first review carry its advice
    proposals = [b["messages"] for b in bodies if not _is_meta(b["messages"])]
    assert "Raise WIDTH in small steps" not in proposals[0][1]["content"]
    assert "Raise WIDTH in small steps" in proposals[-1][1]["content"]
    # resuming a finished run does not repeat a review; more iterations add one
    with ScriptedLLMServer(_responder()) as server:
        assert _run(None, run_dir, server.url) == "iterations"
        assert server.requests == 0
        assert _run(None, run_dir, server.url, "run.iterations=8") == "iterations"
    assert [at for (at,) in _db(run_dir, "select at_evaluated from meta_notes")] == [2, 4, 6, 8]
    status = subprocess.run(
        cambrian_cmd("status", "--run-dir", str(run_dir), "--json"),
        capture_output=True,
        text=True,
        env=scrubbed_env(),
        check=True,
    )
    shown = json.loads(status.stdout)
    assert shown["meta_notes"] == 4 and shown["latest_recommendation"] == ADVICE


def test_interval_zero_makes_no_meta_call(scaffold_task: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    with ScriptedLLMServer(_responder(), record=True) as server:
        reason = _run(scaffold_task, run_dir, server.url, "run.iterations=4", "meta.interval=0")
        assert not any(_is_meta(b["messages"]) for b in server.bodies)
    assert reason == "iterations"
    assert _db(run_dir, "select count(*) from meta_notes") == [(0,)]
    assert _db(run_dir, "select count(*) from llm_calls where purpose = 'meta'") == [(0,)]


def test_meta_failure_leaves_the_run_going(scaffold_task: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    with ScriptedLLMServer(_responder(Fault(500, "meta down"))) as server:
        reason = _run(
            scaffold_task,
            run_dir,
            server.url,
            "run.iterations=4",
            "meta.interval=2",
            "llm.retries=0",
        )
    assert reason == "iterations"
    assert _db(run_dir, "select count(*) from meta_notes") == [(0,)]
    failed = _db(run_dir, "select ok, error from llm_calls where purpose = 'meta'")
    assert len(failed) == 2 and all(not ok and error for ok, error in failed)


def test_empty_meta_reply_stores_nothing(scaffold_task: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    with ScriptedLLMServer(_responder("<think>nothing to say</think>")) as server:
        reason = _run(scaffold_task, run_dir, server.url, "run.iterations=2", "meta.interval=1")
    assert reason == "iterations"
    assert _db(run_dir, "select count(*) from meta_notes") == [(0,)]
    assert _db(run_dir, "select count(*) from llm_calls where purpose = 'meta'") == [(2,)]


def _row(score, parent_score, status="evaluated", reason=""):
    return {"score": score, "parent_score": parent_score, "status": status, "reason": reason}


def test_split_children_is_direction_aware():
    rows = [
        _row(0.5, 0.4),
        _row(0.3, 0.4),
        _row(None, 0.4, "failed", "boom"),
        _row(None, None, "rejected", "SEARCH text not found"),
        _row(0.4, None),  # runs where its parent failed: a repair
        _row(0.4, 0.4),  # no better than its parent
    ]
    up, down = split_children(rows, maximize=True, recent=8)
    assert up == [rows[0], rows[4]] and down == [rows[1], rows[2], rows[3], rows[5]]
    up, down = split_children(rows, maximize=False, recent=8)
    assert up == [rows[1], rows[4]] and rows[0] in down
    up, down = split_children(rows, maximize=True, recent=1)
    assert up == [rows[0]] and down == [rows[1]]  # the newest of each
    assert improved(1.0, 2.0, maximize=False) and not improved(None, 1.0, maximize=True)


def test_diffs_share_a_bounded_budget():
    assert diff_cap(1) == 1500
    assert diff_cap(0) == 1500
    assert diff_cap(40) * 40 <= 16000


def test_render_meta_falls_back_to_the_default_set(tmp_path: Path):
    variables = {
        "description": "Make it big.",
        "direction": "maximize",
        "evaluated": 4,
        "improving": [],
        "failing": [
            {
                "id": "c1",
                "parent_id": "p1",
                "status": "rejected",
                "reason": "SEARCH text not found",
                "score": None,
                "parent_score": 0.25,
                "operator": "diff",
                "diff": "",
            }
        ],
        "previous": "",
        "max_chars": 1500,
    }
    for folder in (TEMPLATE_DIR / "default", TEMPLATE_DIR / "compact", tmp_path):
        system, user = render_meta(folder, variables)
        assert system["role"] == "system" and META_PHRASE in system["content"]
        assert user["role"] == "user" and "SEARCH text not found" in user["content"]
    assert render_meta(tmp_path, variables) == render_meta(TEMPLATE_DIR / "default", variables)


def test_recommendations_keep_no_code():
    # Code in a recommendation would pose as the program in every later prompt.
    from cambrian.agent._meta import prose

    reply = "- widen the ring\n```diff\n--- a/solve.py\n+++ b/solve.py\n```\n- try 0.3\n~~~\nopen"
    assert prose(reply) == "- widen the ring\n- try 0.3"
    assert prose("```python\nprint(1)\n```") == ""
    assert prose("- keep `N` fixed") == "- keep `N` fixed"
