"""Proposal diversity: per-call temperatures from a range, and no fixed seed on the wire."""

from __future__ import annotations

import asyncio
import random

import pytest

from cambrian.config import LLMConfig, ModelEntry
from cambrian.llm import ChatClient, EnsembleLLM, ScriptedLLMServer, replay, sample_temperature

MESSAGES = [{"role": "user", "content": "same prompt every time"}]


async def _calls(llm, n: int) -> None:
    for _ in range(n):
        await llm.complete(MESSAGES)


def test_sample_temperature_is_fixed_or_uniform_over_the_range():
    rng = random.Random(0)
    assert sample_temperature(0.7, rng) == 0.7
    assert sample_temperature((0.5, 0.5), rng) == 0.5
    draws = [sample_temperature((0.2, 1.2), rng) for _ in range(2000)]
    assert min(draws) >= 0.2 and max(draws) <= 1.2
    assert sum(draws) / len(draws) == pytest.approx(0.7, abs=0.03)


def test_range_is_sampled_per_call_and_no_seed_is_sent():
    with ScriptedLLMServer(replay(["ok"]), record=True) as server:
        config = LLMConfig(model="openai/scripted", api_base=server.url, temperature=(0.3, 1.1))
        asyncio.run(_calls(ChatClient(config), 8))
        bodies = server.bodies
    assert len(bodies) == 8
    temperatures = [body["temperature"] for body in bodies]
    assert all(0.3 <= t <= 1.1 for t in temperatures)
    assert len(set(temperatures)) == 8  # identical prompts, different sampling settings
    assert all("seed" not in body for body in bodies)
    assert {body["messages"][0]["content"] for body in bodies} == {MESSAGES[0]["content"]}


def test_fixed_temperature_is_sent_as_is_without_a_seed():
    with ScriptedLLMServer(replay(["ok"]), record=True) as server:
        config = LLMConfig(model="openai/scripted", api_base=server.url, temperature=0.65)
        asyncio.run(_calls(ChatClient(config), 2))
        assert [body["temperature"] for body in server.bodies] == [0.65, 0.65]
        assert all("seed" not in body for body in server.bodies)


def test_ensemble_entries_use_their_own_range_or_the_shared_one():
    with ScriptedLLMServer(replay(["ok"]), record=True) as server:
        models = (
            ModelEntry(name="openai/hot", api_base=server.url, temperature=(1.5, 2.0)),
            ModelEntry(name="openai/plain", api_base=server.url),
        )
        config = LLMConfig(models=models, temperature=(0.1, 0.2), selection="weights")
        asyncio.run(_calls(EnsembleLLM(config, seed=3), 20))
        bodies = server.bodies
    by_model: dict[str, list[float]] = {}
    for body in bodies:
        by_model.setdefault(body["model"], []).append(body["temperature"])
    assert all(1.5 <= t <= 2.0 for t in by_model["hot"])
    assert all(0.1 <= t <= 0.2 for t in by_model["plain"])
    assert all("seed" not in body for body in bodies)
