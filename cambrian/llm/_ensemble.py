"""A fleet of models behind the ``LLM`` Protocol, one picked per call by a bandit policy."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from cambrian.config import LLMConfig, ModelEntry
from cambrian.errors import LLMError
from cambrian.llm._bandit import ModelStats, choose
from cambrian.llm._breaker import CircuitBreaker
from cambrian.llm._client import ChatClient
from cambrian.llm._cost import estimate_cost, is_local
from cambrian.types import Completion

log = logging.getLogger(__name__)
# How often a call waiting for a benched model looks again: a probe elsewhere may end first.
_POLL_S = 0.5


def entry_config(config: LLMConfig, entry: ModelEntry) -> LLMConfig:
    """The single-model ``[llm]`` section for one ensemble entry (unset fields from ``config``).

    Args:
        config: The whole ``[llm]`` section.
        entry: One of its ``models``.
    """

    def pick(value: object, fallback: object) -> object:
        return fallback if value is None else value

    return config.model_copy(
        update={
            "model": entry.name,
            "api_base": pick(entry.api_base, config.api_base),
            "api_key_env": pick(entry.api_key_env, config.api_key_env),
            "temperature": pick(entry.temperature, config.temperature),
            "max_tokens": pick(entry.max_tokens, config.max_tokens),
            "price_in": pick(entry.price_in, config.price_in),
            "price_out": pick(entry.price_out, config.price_out),
            "models": (),
        }
    )


def _entries(config: LLMConfig) -> tuple[ModelEntry, ...]:
    """The configured models, or the single ``llm.model`` as a one-entry fleet."""
    if config.models:
        return config.models
    if config.model is None:
        raise ValueError("config.model is None and llm.models is empty: resolve the model first")
    return (ModelEntry(name=config.model),)


class EnsembleLLM:
    """Several models behind one ``LLM``; each call goes to the model the policy picks.

    ``llm.selection`` is the policy: ``weights`` draws models in proportion to their
    ``weight``; ``ucb`` (UCB1 over the children's improvements, with an optional cost
    penalty) and ``thompson`` (Beta posteriors over improved/not improved) learn from
    ``reward()``. Each model is reached through its own ``ChatClient``, so deadlines,
    retries and per-call temperature sampling apply per model. A model on loopback or
    launched by cambrian costs 0 unless its ``price_in``/``price_out`` say otherwise.

    A failed call goes on to another model. With two models or more, a circuit breaker
    benches a model after ``llm.bench_after`` consecutive failed calls: the policy skips
    it for a cool-down (``llm.bench_cooldown_s``, doubling after each failed probe up to
    ``llm.bench_max_cooldown_s``), then one call probes it.

    Example:
        >>> llm = EnsembleLLM(config, seed=0)
        >>> completion = await llm.complete(messages)  # completion.model: who answered
        >>> llm.reward(completion.model, improvement=0.12)  # after the child's evaluation

    Args:
        config: The ``[llm]`` section; an empty ``models`` makes ``llm.model`` the only one.
        seed: Seed of the policy's RNG (None: unseeded).
        backoff_s: Base of each client's retry backoff (tests make it small).
        clock: Seconds on a monotonic clock, for the cool-downs (tests pass their own).

    Raises:
        ValueError: If there is no model at all.
    """

    def __init__(
        self,
        config: LLMConfig,
        *,
        seed: int | None,
        backoff_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        entries = _entries(config)
        self._config = config
        self._names = [entry.name for entry in entries]
        self._weights = [entry.weight for entry in entries]
        self._max_tokens = {e.name: e.max_tokens or config.max_tokens for e in entries}
        self._clients = {
            e.name: ChatClient(
                entry_config(config, e),
                backoff_s=backoff_s,
                local=is_local(e.api_base or config.api_base, e.launch),
            )
            for e in entries
        }
        self._stats = {name: ModelStats() for name in self._names}
        self._breaker = CircuitBreaker(
            self._names,
            after=config.bench_after if len(entries) > 1 else 0,  # alone, it has no stand-in
            cooldown_s=config.bench_cooldown_s,
            max_cooldown_s=config.bench_max_cooldown_s,
            clock=clock,
        )
        self._rng = random.Random(seed)
        self._in_flight_usd = 0.0
        self.name: str = self._names[0] if len(entries) == 1 else "+".join(self._names)

    @property
    def models(self) -> list[str]:
        """The model names, in configuration order."""
        return list(self._names)

    @property
    def spent_usd(self) -> float:
        """Cost of every finished call (restored ones included)."""
        return sum(stats.cost_usd for stats in self._stats.values())

    @property
    def in_flight_usd(self) -> float:
        """Upper estimate of the cost of the calls still running (prompt + max_tokens)."""
        return max(0.0, self._in_flight_usd)

    def choose(self) -> str:
        """The model the policy picks for the next call, benched ones aside (no pull counted)."""
        return self._choose(self._breaker.ready(self._names) or self._names)

    async def complete(
        self, messages: Sequence[Mapping[str, str]], *, model: str | None = None
    ) -> Completion:
        """Pick a model, count a pull, and return its reply.

        A call that fails after its retries is counted as an error and as an outcome with
        reward 0, and the policy picks another model for it (a new pull); it raises once
        no model in service is left untried. While every model is benched, the call
        waits for the first one it may probe. A cancelled call is not counted at all. A
        follow-up turn (``model`` given) goes to that model and is part of the same
        pull, unless the model is benched: then the policy picks.

        Args:
            messages: OpenAI chat messages.
            model: The model of the conversation's earlier turns (None, or a name not in
                the ensemble: the policy picks).

        Returns:
            The reply; ``model`` names the model that answered.

        Raises:
            LLMError: The last model's error, when every model the call may go to failed.
        """
        if model not in self._clients or not self._breaker.ready([model]):
            model = None  # None, a model no longer in the ensemble, or a benched one
        tried: list[str] = []
        error: LLMError | None = None
        while True:
            name = model or await self._next(tried, error)
            try:
                return await self._call(name, messages, pull=model is None)
            except LLMError as exc:
                error, model = exc, None
                tried.append(name)

    def reward(self, model: str, improvement: float | None) -> None:
        """Record the outcome of a call to ``model``.

        Args:
            model: ``Completion.model`` of the call.
            improvement: The child's score minus its parent's, signed so that better is
                positive (parent minus child when minimising); None when the reply was
                rejected or the child failed. Negative values count as 0. Calls that
                raised were counted already: don't reward them.

        Raises:
            ValueError: If ``model`` is not in the ensemble.
        """
        if model not in self._stats:
            raise ValueError(f"unknown model {model!r}: the ensemble has {self._names}")
        gain = max(0.0, improvement or 0.0)
        self._update(model, rewards=1, successes=int(gain > 0), reward_sum=gain)

    def forget(self, model: str) -> None:
        """Undo the pull of a call whose outcome says nothing about ``model`` (a duplicate).

        Raises:
            ValueError: If ``model`` is not in the ensemble.
        """
        if model not in self._stats:
            raise ValueError(f"unknown model {model!r}: the ensemble has {self._names}")
        self._update(model, pulls=-1)

    def restore(self, stats: Mapping[str, ModelStats]) -> None:
        """Replace the statistics with ``stats`` (rebuilt from the archive on resume).

        Models of the ensemble missing from ``stats`` start fresh; names that are no
        longer in the ensemble are ignored.

        Args:
            stats: Statistics per model name.
        """
        self._stats = {name: stats.get(name, ModelStats()) for name in self._names}

    async def aclose(self) -> None:
        """Close every model's connections for the running event loop."""
        for client in self._clients.values():
            await client.aclose()

    def errors_by_model(self) -> dict[str, dict[str, int]]:
        """Failed attempts (retried or final) per model, by class."""
        return {name: dict(c.error_counts) for name, c in self._clients.items() if c.error_counts}

    def stats(self) -> dict[str, ModelStats]:
        """The statistics per model, in configuration order."""
        return {name: self._stats[name] for name in self._names}

    def _choose(self, names: Sequence[str]) -> str:
        """The policy's pick among ``names``."""
        index = choose(
            self._config.selection,
            [self._stats[name] for name in names],
            [self._weights[self._names.index(name)] for name in names],
            self._rng,
            ucb_c=self._config.ucb_c,
            cost_weight=self._config.cost_weight,
        )
        return names[index]

    async def _next(self, tried: Sequence[str], error: LLMError | None) -> str:
        """The pick among the models this call has not tried that may take a call now.

        While every model is benched, waits for one of those. Raises ``error`` when none
        is left, or when one in service failed this call (the caller counts a failure).
        """
        while True:
            untried = [name for name in self._names if name not in tried]
            ready = self._breaker.ready(untried)
            if ready:
                return self._choose(ready)
            benched = all(self._breaker.benched(name) for name in self._names)
            if error is not None and not (untried and benched):
                raise error
            wait = self._breaker.wait_s(untried)
            await asyncio.sleep(_POLL_S if wait is None else min(wait, _POLL_S))

    async def _call(
        self, model: str, messages: Sequence[Mapping[str, str]], *, pull: bool
    ) -> Completion:
        """One call to ``model``, counted in its statistics and by the breaker."""
        probe = self._breaker.start(model)  # before any await: one probe at a time
        pulls = int(pull)
        self._update(model, pulls=pulls)
        client = self._clients[model]
        estimate = 0.0
        settled = False
        try:
            estimate = estimate_cost(messages, await client.prices(), self._max_tokens[model])
            self._in_flight_usd += estimate
            completion = await client.complete(messages)
            settled = True
        except LLMError as exc:
            settled = True
            self._update(model, calls=1, errors=1, rewards=1)  # closes the proposal's pull
            if self._breaker.failed(model, probe=probe):
                wait = self._breaker.wait_s([model]) or 0.0
                log.warning("model %s benched for %.0f s: %s", model, wait, exc)
            raise
        finally:
            self._in_flight_usd -= estimate
            if not settled:
                self._update(model, pulls=-pulls)
                self._breaker.cancelled(model, probe=probe)
        if probe:
            log.info("model %s answered its probe and is back in service", model)
        self._breaker.succeeded(model)
        self._update(
            model,
            calls=1,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            cost_usd=completion.cost_usd,
        )
        return completion

    def _update(self, model: str, **delta: float) -> None:
        """Add ``delta`` to the fields of ``model``'s statistics."""
        current = self._stats[model]
        self._stats[model] = replace(
            current, **{key: getattr(current, key) + value for key, value in delta.items()}
        )
