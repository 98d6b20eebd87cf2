"""The ensemble's selection policies as pure functions over fixed statistics."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from cambrian.llm import (
    ModelStats,
    choose,
    choose_thompson,
    choose_ucb,
    choose_weighted,
    ucb_scores,
)


def _observed(pulls: int, gain: float, successes: int | None = None, **extra) -> ModelStats:
    """Stats of a model with ``pulls`` observed outcomes of mean improvement ``gain``."""
    wins = pulls if successes is None else successes
    return ModelStats(pulls=pulls, rewards=pulls, successes=wins, reward_sum=gain * pulls, **extra)


def test_ucb_tries_an_untried_model_first():
    stats = [_observed(10, 0.9), ModelStats(), _observed(3, 0.1)]
    assert choose_ucb(stats, c=1.0) == 1
    assert ucb_scores(stats, c=1.0)[1] == float("inf")


def test_ucb_picks_the_better_model_at_equal_pulls():
    assert choose_ucb([_observed(10, 0.1), _observed(10, 0.5)], c=1.0) == 1
    assert choose_ucb([_observed(10, 0.5), _observed(10, 0.1)], c=1.0) == 0


def test_ucb_explores_a_rarely_pulled_model():
    # Model 1 is worse but pulled once in 101: its bonus outweighs model 0's lead.
    stats = [_observed(100, 0.5), _observed(1, 0.1)]
    assert choose_ucb(stats, c=1.0) == 1
    assert choose_ucb(stats, c=0.0) == 0  # no exploration: pure exploitation


def test_ucb_counts_in_flight_calls_as_pulls():
    # Same observed record, but model 0 has 20 calls in flight: its bonus shrinks.
    busy = ModelStats(pulls=25, rewards=5, successes=5, reward_sum=2.5)
    idle = _observed(5, 0.5)
    assert busy.pending == 20 and busy.mean_reward == idle.mean_reward
    assert choose_ucb([busy, idle], c=1.0) == 1


def test_ucb_rewards_are_scale_free():
    small = [_observed(10, 1e-6), _observed(10, 2e-6)]
    large = [_observed(10, 1.0), _observed(10, 2.0)]
    assert ucb_scores(small, c=1.0) == pytest.approx(ucb_scores(large, c=1.0))


def test_ucb_cost_term_prefers_the_cheaper_of_two_equal_models():
    cheap = _observed(10, 0.5, calls=10, cost_usd=0.01)
    dear = _observed(10, 0.5, calls=10, cost_usd=1.0)
    assert choose_ucb([dear, cheap], c=1.0, cost_weight=0.0) == 0  # tie: the first
    assert choose_ucb([dear, cheap], c=1.0, cost_weight=0.5) == 1
    # A large enough improvement still pays for the price.
    better_dear = _observed(10, 2.0, calls=10, cost_usd=1.0)
    assert choose_ucb([better_dear, cheap], c=1.0, cost_weight=0.5) == 0


def test_thompson_shifts_pulls_toward_the_better_model():
    rng = random.Random(7)
    truth = [0.1, 0.6]  # chance that a model's child improves
    stats = [ModelStats(), ModelStats()]
    picks = Counter()
    for _ in range(300):
        i = choose_thompson(stats, rng)
        picks[i] += 1
        win = rng.random() < truth[i]
        s = stats[i]
        stats[i] = ModelStats(pulls=s.pulls + 1, rewards=s.rewards + 1, successes=s.successes + win)
    assert picks[1] > 4 * picks[0], picks
    assert picks[0] >= 3  # the worse model was still explored


def test_thompson_on_fixed_records_prefers_the_clear_winner():
    rng = random.Random(0)
    stats = [_observed(50, 0.1, successes=2), _observed(50, 0.1, successes=40)]
    picks = Counter(choose_thompson(stats, rng) for _ in range(200))
    assert picks[1] >= 195


def test_weights_follow_the_weights():
    rng = random.Random(3)
    picks = Counter(choose_weighted([1.0, 3.0], rng) for _ in range(4000))
    assert picks[1] / 4000 == pytest.approx(0.75, abs=0.03)
    with pytest.raises(ValueError, match="positive"):
        choose_weighted([1.0, 0.0], rng)


def test_failed_calls_are_zero_outcomes_and_do_not_make_a_model_look_cheap():
    answering = _observed(4, 0.0, calls=4, cost_usd=4.0)
    failing = _observed(4, 0.0, calls=4, errors=3, cost_usd=1.0)  # one answer, as dear
    assert answering.mean_cost == failing.mean_cost == 1.0
    assert failing.mean_reward == 0.0 and failing.pending == 0
    assert ucb_scores([answering, failing], c=1.0, cost_weight=1.0) == pytest.approx(
        ucb_scores([answering, answering], c=1.0, cost_weight=1.0)
    )


def test_choose_dispatches_and_rejects_unknown_policies():
    stats = [_observed(10, 0.1), _observed(10, 0.5)]
    rng = random.Random(0)
    assert choose("ucb", stats, [1, 1], rng, ucb_c=1.0, cost_weight=0.0) == 1
    assert choose("weights", stats, [1e-9, 1], rng, ucb_c=1.0, cost_weight=0.0) == 1
    assert choose("thompson", stats, [1, 1], rng, ucb_c=1.0, cost_weight=0.0) in (0, 1)
    with pytest.raises(ValueError, match="unknown selection policy 'greedy'"):
        choose("greedy", stats, [1, 1], rng, ucb_c=1.0, cost_weight=0.0)
    with pytest.raises(ValueError, match="2 stats for 3 weights"):
        choose("ucb", stats, [1, 1, 1], rng, ucb_c=1.0, cost_weight=0.0)
