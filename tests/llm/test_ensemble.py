"""EnsembleLLM against two real scripted OpenAI-compatible servers on loopback."""

from __future__ import annotations

import asyncio

import pytest

from cambrian.config import LLMConfig, ModelEntry, build_config
from cambrian.errors import ConfigError, LLMError
from cambrian.llm import EnsembleLLM, Fault, ModelStats, ScriptedLLMServer, get_llm, replay

MESSAGES = [{"role": "user", "content": "improve the program " * 50}]
GOOD, BAD = "openai/good", "openai/bad"


def _config(good: ScriptedLLMServer, bad: ScriptedLLMServer, **llm) -> LLMConfig:
    models = (
        ModelEntry(name=GOOD, api_base=good.url),
        ModelEntry(name=BAD, api_base=bad.url),
    )
    return LLMConfig(models=models, retries=0, timeout_s=10.0, **llm)


def _servers() -> tuple[ScriptedLLMServer, ScriptedLLMServer]:
    return ScriptedLLMServer(replay(["from good"])), ScriptedLLMServer(replay(["from bad"]))


async def _evolve(llm: EnsembleLLM, rounds: int) -> list[str]:
    """Call ``rounds`` times; children of GOOD improve by 0.5, those of BAD never."""
    answered = []
    for _ in range(rounds):
        completion = await llm.complete(MESSAGES)
        answered.append(completion.model)
        llm.reward(completion.model, 0.5 if completion.model == GOOD else -0.2)
    return answered


@pytest.mark.parametrize("selection", ["ucb", "thompson"])
def test_rewards_shift_pulls_toward_the_model_that_improves(selection):
    good, bad = _servers()
    with good, bad:
        llm = EnsembleLLM(_config(good, bad, selection=selection), seed=1, backoff_s=0.01)
        answered = asyncio.run(_evolve(llm, 30))
        # Every call reached the server of the model that Completion.model names.
        assert good.requests == answered.count(GOOD)
        assert bad.requests == answered.count(BAD)
    stats = llm.stats()
    assert stats[GOOD].pulls >= 3 * stats[BAD].pulls, stats
    assert stats[BAD].pulls >= 1  # explored
    assert stats[GOOD].successes == stats[GOOD].rewards == stats[GOOD].pulls
    assert stats[BAD].successes == 0 and stats[BAD].reward_sum == 0.0  # clipped at 0
    assert stats[GOOD].mean_reward == pytest.approx(0.5)
    assert stats[GOOD].prompt_tokens > 0 and stats[GOOD].calls == stats[GOOD].pulls


def test_weights_route_calls_in_proportion():
    good, bad = _servers()
    with good, bad:
        config = _config(good, bad, selection="weights")
        models = (config.models[0].model_copy(update={"weight": 4.0}), config.models[1])
        llm = EnsembleLLM(config.model_copy(update={"models": models}), seed=0, backoff_s=0.01)

        async def run() -> None:
            await asyncio.gather(*(llm.complete(MESSAGES) for _ in range(40)))

        asyncio.run(run())
        assert good.requests + bad.requests == 40
        assert good.requests >= 2 * bad.requests
    assert llm.name == f"{GOOD}+{BAD}"


def test_failed_call_counts_as_an_error_and_a_zero_outcome_and_goes_on():
    good = ScriptedLLMServer(replay([Fault(500)]))
    bad = ScriptedLLMServer(replay(["fine"]))
    with good, bad:
        llm = EnsembleLLM(_config(good, bad), seed=0, backoff_s=0.01)
        completion = asyncio.run(llm.complete(MESSAGES))  # UCB tries the first untried model
    assert completion.model == BAD  # the other model took the call over
    stats = llm.stats()
    assert (stats[GOOD].pulls, stats[GOOD].rewards, stats[GOOD].errors) == (1, 1, 1)
    assert stats[GOOD].pending == 0 and llm.in_flight_usd == 0.0
    assert (stats[BAD].pulls, stats[BAD].calls, stats[BAD].pending) == (1, 1, 1)


def test_a_call_raises_once_every_model_failed():
    first, second = ScriptedLLMServer(replay([Fault(500)])), ScriptedLLMServer(replay([Fault(503)]))
    with first, second:
        llm = EnsembleLLM(_config(first, second), seed=0, backoff_s=0.01)
        with pytest.raises(LLMError, match="503"):
            asyncio.run(llm.complete(MESSAGES))
        assert (first.requests, second.requests) == (1, 1)
    assert all(s.errors == s.pulls == s.rewards == 1 for s in llm.stats().values())


def test_in_flight_calls_are_pulls_and_carry_a_cost_estimate():
    slow = ScriptedLLMServer(replay([Fault(200, "late", delay_s=0.5)]))
    other = ScriptedLLMServer(replay(["x"]))
    with slow, other:
        config = _config(slow, other)
        priced = tuple(
            m.model_copy(update={"price_in": 1.0, "price_out": 2.0}) for m in config.models
        )
        llm = EnsembleLLM(config.model_copy(update={"models": priced}), seed=0, backoff_s=0.01)

        async def run() -> None:
            task = asyncio.create_task(llm.complete(MESSAGES))
            await asyncio.sleep(0.3)
            assert llm.stats()[GOOD].pending == 1
            # Prompt ~ 1000 chars / 4 + framing, plus max_tokens (4096) of output.
            assert llm.in_flight_usd == pytest.approx((255 * 1.0 + 4096 * 2.0) / 1e6, rel=0.05)
            assert llm.choose() == BAD  # UCB: the untried model, not the busy one
            completion = await task
            assert completion.cost_usd > 0

        asyncio.run(run())
    assert llm.in_flight_usd == 0.0
    assert llm.spent_usd == pytest.approx(llm.stats()[GOOD].cost_usd)


def test_loopback_models_are_free_unless_priced():
    a = ScriptedLLMServer(replay(["one two three"]))
    b = ScriptedLLMServer(replay(["one two three"]))
    with a, b:
        models = (
            ModelEntry(name="openai/gpt-4o-mini", api_base=a.url),  # priced in litellm's map
            ModelEntry(name="openai/gpt-4o", api_base=b.url, price_in=1.0, price_out=1.0),
        )
        llm = EnsembleLLM(LLMConfig(models=models, retries=0), seed=0, backoff_s=0.01)
        first = asyncio.run(llm.complete(MESSAGES))
        second = asyncio.run(llm.complete(MESSAGES))
    assert (first.model, first.cost_usd) == ("openai/gpt-4o-mini", 0.0)
    tokens = second.prompt_tokens + second.completion_tokens
    assert second.cost_usd == pytest.approx(tokens / 1e6)


def test_restore_keeps_known_models_and_starts_new_ones_fresh():
    good, bad = _servers()
    with good, bad:
        llm = EnsembleLLM(_config(good, bad), seed=0)
    saved = {
        GOOD: ModelStats(pulls=9, rewards=9, successes=4, reward_sum=2.0, cost_usd=0.5),
        "openai/removed": ModelStats(pulls=50, rewards=50),
    }
    llm.restore(saved)
    assert llm.stats() == {GOOD: saved[GOOD], BAD: ModelStats()}
    assert llm.spent_usd == 0.5
    assert llm.choose() == BAD  # the fresh model is untried
    llm.restore({GOOD: saved[GOOD], BAD: ModelStats(pulls=9, rewards=9)})
    assert llm.choose() == GOOD  # equal pulls: the one that improved
    with pytest.raises(ValueError, match="unknown model 'openai/removed'"):
        llm.reward("openai/removed", 1.0)


def test_single_model_config_builds_a_one_model_ensemble_and_get_llm_picks():
    with ScriptedLLMServer(replay(["solo"])) as server:
        config = LLMConfig(model="openai/solo", api_base=server.url)
        llm = EnsembleLLM(config, seed=0)
        assert (llm.name, llm.models) == ("openai/solo", ["openai/solo"])
        assert asyncio.run(llm.complete(MESSAGES)).model == "openai/solo"
        assert type(get_llm(config)).__name__ == "ChatClient"
        ensemble = config.model_copy(update={"models": (ModelEntry(name="openai/solo"),)})
        assert isinstance(get_llm(ensemble, seed=0), EnsembleLLM)
    with pytest.raises(ValueError, match="llm.models is empty"):
        EnsembleLLM(LLMConfig(), seed=0)


def test_model_list_config_is_validated():
    config = build_config(
        {
            "llm": {
                "selection": "thompson",
                "models": [
                    {"name": "openai/a", "temperature": [0.2, 1.0], "weight": 2},
                    {"name": "hosted_vllm/b", "launch": "vllm", "gpus": ["0", "1"]},
                ],
            },
            "run": {"max_cost_usd": 2.5},
        }
    )
    assert config.llm.models[0].temperature == (0.2, 1.0)
    assert config.llm.models[1].launch == "vllm" and config.run.max_cost_usd == 2.5
    bad = [
        ({"llm": {"models": [{"name": "a"}, {"name": "a"}]}}, "name twice"),
        ({"llm": {"models": [{"name": "a", "temperature": [1.5, 0.5]}]}}, "lo <= hi"),
        ({"llm": {"temperature": 3}}, "llm.temperature"),
        ({"llm": {"selection": "greedy"}}, "llm.selection"),
        ({"llm": {"models": [{"name": "a", "wieght": 1}]}}, "unknown config key"),
    ]
    for data, message in bad:
        with pytest.raises(ConfigError, match=message):
            build_config(data)


def test_a_follow_up_turn_goes_to_its_model_and_counts_no_pull():
    good, bad = _servers()
    with good, bad:
        llm = EnsembleLLM(_config(good, bad, selection="weights"), seed=3, backoff_s=0.01)

        async def turns() -> list[str]:
            first = await llm.complete(MESSAGES)
            again = [await llm.complete(MESSAGES, model=first.model) for _ in range(3)]
            gone = await llm.complete(MESSAGES, model="openai/removed")  # policy picks
            return [first.model, *(c.model for c in again), gone.model]

        models = asyncio.run(turns())
    assert len(set(models[:4])) == 1  # every follow-up answered by the first model
    stats = llm.stats()
    assert stats[GOOD].pulls + stats[BAD].pulls == 2  # the first call and the fallback
    assert stats[GOOD].calls + stats[BAD].calls == 5
    llm.forget(models[0])
    assert llm.stats()[models[0]].pulls == stats[models[0]].pulls - 1


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


FAILING, HUNG = "openai/failing", "openai/hung"


def _fleet(*servers: tuple[str, ScriptedLLMServer], **llm) -> LLMConfig:
    models = tuple(ModelEntry(name=name, api_base=server.url) for name, server in servers)
    return LLMConfig(models=models, **{"retries": 1, "timeout_s": 1.0, **llm})


def _calls(llm: EnsembleLLM, n: int) -> set[str]:
    async def run() -> set[str]:
        return {(await llm.complete(MESSAGES)).model for _ in range(n)}

    return asyncio.run(run())


def test_failing_and_hung_models_are_benched_then_probed_after_their_cool_down():
    good = ScriptedLLMServer(replay(["fine"]))
    failing = ScriptedLLMServer(replay([Fault(500)]))
    hung = ScriptedLLMServer(replay([Fault(200, "too late", delay_s=30)]))
    clock = Clock()
    with good, failing, hung:
        config = _fleet((GOOD, good), (FAILING, failing), (HUNG, hung), bench_cooldown_s=60)
        llm = EnsembleLLM(config, seed=0, backoff_s=0.01, clock=clock)
        assert _calls(llm, 20) == {GOOD}  # every call answered: failed ones went on to GOOD
        # bench_after = 2 calls each; a call is 2 attempts (retries = 1; a timeout once).
        assert (failing.requests, hung.requests) == (4, 4)
        assert llm.stats()[HUNG].errors == 2 and llm.errors_by_model()[HUNG] == {"timeout": 4}
        clock.now += 60
        assert _calls(llm, 10) == {GOOD}
        assert (failing.requests, hung.requests) == (6, 6)  # one probe each, failed
        clock.now += 60
        assert _calls(llm, 5) == {GOOD}
        assert (failing.requests, hung.requests) == (6, 6)  # the cool-down doubled
        clock.now += 60
        _calls(llm, 5)
        assert (failing.requests, hung.requests) == (8, 8)


def test_a_follow_up_to_a_benched_model_goes_to_the_policy_until_its_probe():
    bad = ScriptedLLMServer(replay(["from bad", Fault(500)]))
    good = ScriptedLLMServer(replay(["from good"]))
    clock = Clock()
    with bad, good:
        config = _fleet((BAD, bad), (GOOD, good), retries=0, bench_after=1, bench_cooldown_s=5)
        llm = EnsembleLLM(config, seed=0, backoff_s=0.01, clock=clock)

        async def turns() -> list[str]:
            first = [(await llm.complete(MESSAGES)).model for _ in range(3)]
            benched = await llm.complete(MESSAGES, model=BAD)  # BAD failed the third call
            clock.now += 5
            probe = await llm.complete(MESSAGES, model=BAD)
            return [*first, benched.model, probe.model]

        assert asyncio.run(turns()) == [BAD, GOOD, GOOD, GOOD, BAD]
        assert bad.requests == 3  # nothing went to BAD while it was benched
    stats = llm.stats()
    assert (stats[BAD].pulls, stats[BAD].calls, stats[BAD].errors) == (2, 3, 1)
    assert stats[GOOD].pulls == 3  # the fallback counts a pull, the probe does not


def test_when_every_model_is_benched_a_call_waits_for_the_first_probe():
    flaky = ScriptedLLMServer(replay([Fault(500), "back"]))
    dead = ScriptedLLMServer(replay([Fault(500)]))
    with flaky, dead:
        config = _fleet((GOOD, flaky), (BAD, dead), retries=0, bench_after=1, bench_cooldown_s=0.2)
        llm = EnsembleLLM(config, seed=0, backoff_s=0.01)
        with pytest.raises(LLMError):
            asyncio.run(llm.complete(MESSAGES))  # both fail: both are benched now
        assert (flaky.requests, dead.requests) == (1, 1)
        assert asyncio.run(llm.complete(MESSAGES)).text == "back"  # waited, then probed
        assert flaky.requests == 2 and dead.requests in (1, 2)


def test_a_single_model_is_never_benched():
    with ScriptedLLMServer(replay([Fault(500)])) as server:
        config = _fleet((GOOD, server), retries=0, bench_after=1, bench_cooldown_s=600)
        llm = EnsembleLLM(config, seed=0, backoff_s=0.01)
        for _ in range(3):  # each call fails at once; the run's own failure limit applies
            with pytest.raises(LLMError):
                asyncio.run(llm.complete(MESSAGES))
        assert server.requests == 3
