"""The ensemble's circuit breaker: a model whose calls keep failing is benched for a while.

After ``after`` consecutive failed calls a model is benched: no call goes to it until its
cool-down ends. Then one call, the probe, may go to it; while the probe runs, no other
call does. A probe that answers puts the model back in service; one that fails benches
it again for twice as long, up to the longest cool-down. Any answered call resets the
count of failures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass


@dataclass
class _Health:
    """One model's record: consecutive failures and, while benched, until when."""

    failures: int = 0
    benches: int = 0  # times benched since the model last answered
    until: float = 0.0
    probing: bool = False


class CircuitBreaker:
    """Which models of an ensemble may take a call now.

    Example:
        >>> breaker = CircuitBreaker(["a", "b"], after=2, cooldown_s=30, max_cooldown_s=600)
        >>> for _ in range(2):
        ...     benched = breaker.failed("b", probe=breaker.start("b"))
        >>> breaker.ready(["a", "b"])  # b is benched for 30 s
        ['a']

    Args:
        names: The models.
        after: Consecutive failed calls that bench a model (0: never bench).
        cooldown_s: First cool-down; it doubles after each failed probe.
        max_cooldown_s: Longest cool-down.
        clock: Seconds on a monotonic clock (tests pass their own).

    Raises:
        ValueError: If ``after`` is negative or a cool-down is not positive.
    """

    def __init__(
        self,
        names: Iterable[str],
        *,
        after: int,
        cooldown_s: float,
        max_cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if after < 0:
            raise ValueError(f"after must be >= 0, got {after}")
        if cooldown_s <= 0 or max_cooldown_s <= 0:
            raise ValueError(f"cool-downs must be > 0, got {cooldown_s} and {max_cooldown_s}")
        self._after = after
        self._cooldown_s = cooldown_s
        self._max_cooldown_s = max_cooldown_s
        self._clock = clock
        self._health = {name: _Health() for name in names}

    def ready(self, names: Sequence[str]) -> list[str]:
        """The models of ``names`` that may take a call now, in the given order."""
        return [name for name in names if self._ready(self._health[name])]

    def benched(self, name: str) -> bool:
        """Whether ``name`` is benched (its probe in flight counts as benched too)."""
        return self._benched(self._health[name])

    def wait_s(self, names: Sequence[str]) -> float | None:
        """Seconds until one of ``names`` may take a call (0.0 now).

        None when none of them is benched without a probe in flight: waiting for the
        clock alone would not help (a probe's outcome, or nothing, is awaited).
        """
        if self.ready(names):
            return 0.0
        waits = [
            self._health[name].until - self._clock()
            for name in names
            if self._benched(self._health[name]) and not self._health[name].probing
        ]
        return max(0.0, min(waits)) if waits else None

    def start(self, name: str) -> bool:
        """Note a call to ``name`` starting.

        Returns:
            True when the call is the model's probe (it is benched, past its cool-down).
        """
        health = self._health[name]
        if self._benched(health):
            health.probing = True
            return True
        return False

    def succeeded(self, name: str) -> None:
        """Note an answered call (a probe or not): ``name`` is back in service."""
        self._health[name] = _Health()

    def failed(self, name: str, *, probe: bool) -> bool:
        """Note a failed call to ``name``.

        Args:
            name: The model.
            probe: Whether the call was its probe (what ``start`` returned).

        Returns:
            True when this failure benched the model: its count of consecutive failures
            reached ``after``, or its probe failed.
        """
        health = self._health[name]
        if not probe and self._benched(health):
            return False  # it started before the model was benched: nothing new
        health.failures += 1
        if not (probe or (self._after and health.failures == self._after)):
            return False
        health.probing = False
        health.benches += 1
        delay = self._cooldown_s * 2 ** (health.benches - 1)
        health.until = self._clock() + min(delay, self._max_cooldown_s)
        return True

    def cancelled(self, name: str, *, probe: bool) -> None:
        """Note a call to ``name`` cut short; when it was the probe, another is owed."""
        if probe:
            self._health[name].probing = False

    def _benched(self, health: _Health) -> bool:
        return bool(self._after) and health.failures >= self._after

    def _ready(self, health: _Health) -> bool:
        if not self._benched(health):
            return True
        return not health.probing and self._clock() >= health.until
