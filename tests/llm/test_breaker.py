"""The circuit breaker as a pure state machine on a clock the test moves by hand."""

from __future__ import annotations

import pytest

from cambrian.llm import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock: Clock, after: int = 2) -> CircuitBreaker:
    return CircuitBreaker(["a", "b"], after=after, cooldown_s=10, max_cooldown_s=35, clock=clock)


def _fail(breaker: CircuitBreaker, name: str) -> bool:
    return breaker.failed(name, probe=breaker.start(name))


def test_consecutive_failures_bench_a_model_until_its_cool_down_ends():
    clock = Clock()
    breaker = _breaker(clock)
    assert not _fail(breaker, "b")
    breaker.succeeded("b")  # an answer resets the count
    assert not _fail(breaker, "b")
    assert _fail(breaker, "b")
    assert breaker.ready(["a", "b"]) == ["a"] and breaker.benched("b")
    assert breaker.wait_s(["b"]) == 10.0 and breaker.wait_s(["a", "b"]) == 0.0
    clock.now += 9.9
    assert breaker.ready(["b"]) == []
    clock.now += 0.1
    assert breaker.ready(["b"]) == ["b"]  # due for its probe


def test_one_probe_at_a_time_and_a_failed_probe_doubles_the_cool_down_up_to_the_cap():
    clock = Clock()
    breaker = _breaker(clock)
    _fail(breaker, "b"), _fail(breaker, "b")
    waits = []
    for _ in range(4):
        clock.now += 1000
        assert breaker.start("b")  # the probe
        assert breaker.ready(["b"]) == [] and breaker.wait_s(["b"]) is None
        assert breaker.failed("b", probe=True)
        waits.append(breaker.wait_s(["b"]))
    assert waits == [20.0, 35.0, 35.0, 35.0]
    clock.now += 35
    assert breaker.start("b")
    breaker.succeeded("b")
    assert not breaker.benched("b")
    assert not _fail(breaker, "b")  # back in service: the count starts over, so does the wait
    assert _fail(breaker, "b") and breaker.wait_s(["b"]) == 10.0


def test_calls_that_started_before_the_bench_change_nothing():
    clock = Clock()
    breaker = _breaker(clock)
    late = [breaker.start("b") for _ in range(3)]  # three calls in flight, none a probe
    assert late == [False, False, False]
    assert not breaker.failed("b", probe=False)
    assert breaker.failed("b", probe=False)
    assert not breaker.failed("b", probe=False)  # the third one: benched already
    assert breaker.wait_s(["b"]) == 10.0


def test_a_cancelled_probe_is_owed_again():
    clock = Clock()
    breaker = _breaker(clock)
    _fail(breaker, "a"), _fail(breaker, "a")
    clock.now += 10
    assert breaker.start("a")
    breaker.cancelled("a", probe=True)
    assert breaker.ready(["a"]) == ["a"]


def test_after_zero_never_benches():
    breaker = _breaker(Clock(), after=0)
    assert not any(_fail(breaker, "a") for _ in range(20))
    assert breaker.ready(["a", "b"]) == ["a", "b"]


def test_misuse_is_refused():
    with pytest.raises(ValueError, match="after"):
        CircuitBreaker(["a"], after=-1, cooldown_s=1, max_cooldown_s=1)
    with pytest.raises(ValueError, match="cool-downs"):
        CircuitBreaker(["a"], after=1, cooldown_s=0, max_cooldown_s=1)
