"""A run over an ensemble with a failing and a hung endpoint: both are benched, the run ends."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cambrian.agent import Evolution, open_run
from cambrian.llm import Fault, ScriptedLLMServer, mutate_numbers, replay

CONCURRENCY = 2
BENCH_AFTER = 2


def test_bad_models_get_a_bounded_number_of_calls(scaffold_task: Path, tmp_path: Path) -> None:
    good = ScriptedLLMServer(mutate_numbers(0))
    failing = ScriptedLLMServer(replay([Fault(500)]))
    hung = ScriptedLLMServer(replay([Fault(200, "too late", delay_s=30)]))
    with good, failing, hung:
        models = [
            {"name": "openai/good", "api_base": good.url},
            {"name": "openai/failing", "api_base": failing.url},
            {"name": "openai/hung", "api_base": hung.url},
        ]
        llm = {"models": models, "timeout_s": 1.0, "retries": 1, "bench_cooldown_s": 600.0}
        overrides = [
            'sandbox.backend="process"',
            "run.iterations=20",
            f"run.proposal_concurrency={CONCURRENCY}",
            "run.eval_concurrency=1",
            f"llm.bench_after={BENCH_AFTER}",
        ]
        ctx = open_run(scaffold_task, tmp_path / "run", extra={"llm": llm}, overrides=overrides)
        try:
            reason = asyncio.run(Evolution(ctx).run())
            evaluated = ctx.archive.stats()["evaluated"]
        finally:
            ctx.close()
        # Calls that reach a model before it is benched: bench_after, plus those already in
        # flight beside the one that benched it; each is 2 attempts (retries = 1, and a
        # timeout is retried once at most).
        most = 2 * (BENCH_AFTER + CONCURRENCY - 1)
        assert reason == "iterations" and evaluated >= 20
        assert 0 < failing.requests <= most and 0 < hung.requests <= most
        assert good.requests >= 20
