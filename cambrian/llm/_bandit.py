"""Model-selection policies for the ensemble: fixed weights, UCB1 and Thompson sampling.

Every policy is a pure function of per-model statistics (and an RNG where it samples), so
it is tested without I/O and its state can be rebuilt from the archive on resume.

The reward of a call is the improvement of the child it produced over its parent,
clipped at 0; a call that fails, or whose child is rejected or fails evaluation, is an
outcome with reward 0. A call counts as a pull from the moment it starts, so calls still
in flight steer UCB away from piling every concurrent call onto one model.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

POLICIES = ("ucb", "thompson", "weights")


@dataclass(frozen=True)
class ModelStats:
    """What the ensemble knows about one model.

    Attributes:
        pulls: Calls started, including those whose outcome is still pending.
        rewards: Outcomes observed (rewarded children, failed calls included).
        successes: Outcomes whose improvement was above 0.
        reward_sum: Sum of the improvements, each clipped at 0.
        calls: Calls that finished (with a reply or an error).
        errors: Calls that failed after their retries.
        prompt_tokens: Prompt tokens over every finished call.
        completion_tokens: Completion tokens over every finished call.
        cost_usd: Cost over every finished call.
    """

    pulls: int = 0
    rewards: int = 0
    successes: int = 0
    reward_sum: float = 0.0
    calls: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def pending(self) -> int:
        """Pulls whose outcome has not been observed yet."""
        return max(0, self.pulls - self.rewards)

    @property
    def mean_reward(self) -> float:
        """Mean clipped improvement per observed outcome (0.0 before any)."""
        return self.reward_sum / self.rewards if self.rewards else 0.0

    @property
    def mean_cost(self) -> float:
        """Mean cost per answered call (0.0 before any).

        Failed calls cost nothing and are left out: they must not make a model look cheap.
        """
        answered = self.calls - self.errors
        return self.cost_usd / answered if answered > 0 else 0.0


def choose_weighted(weights: Sequence[float], rng: random.Random) -> int:
    """Index of a model drawn with probability proportional to its weight.

    Args:
        weights: Positive weights, one per model.
        rng: The caller's RNG.

    Raises:
        ValueError: If ``weights`` is empty or not all positive.
    """
    if not weights or min(weights) <= 0:
        raise ValueError(f"weights must be a non-empty list of positive numbers, got {weights}")
    return rng.choices(range(len(weights)), weights=weights)[0]


def ucb_scores(stats: Sequence[ModelStats], c: float, cost_weight: float = 0.0) -> list[float]:
    """UCB1 scores: normalised mean reward + exploration bonus - cost penalty.

    Improvements have the task's own scale, so each model's mean reward is divided by the
    best model's mean (the best scores 1.0; all 0.0 while nothing improved). The bonus is
    ``c * sqrt(2 ln N / n)`` with ``n`` the model's pulls (in-flight ones included) and
    ``N`` their total. The penalty is ``cost_weight`` times the model's mean cost per call
    divided by the most expensive model's. A model with no pulls scores ``inf``.

    Args:
        stats: One entry per model.
        c: Weight of the exploration bonus (>= 0).
        cost_weight: Weight of the relative cost penalty (>= 0).
    """
    if c < 0 or cost_weight < 0:
        raise ValueError(f"c and cost_weight must be >= 0, got {c} and {cost_weight}")
    best_mean = max((s.mean_reward for s in stats), default=0.0)
    top_cost = max((s.mean_cost for s in stats), default=0.0)
    total = sum(s.pulls for s in stats)
    scores = []
    for s in stats:
        if s.pulls == 0:
            scores.append(math.inf)
            continue
        mean = s.mean_reward / best_mean if best_mean > 0 else 0.0
        bonus = c * math.sqrt(2 * math.log(max(total, 1)) / s.pulls)
        penalty = cost_weight * s.mean_cost / top_cost if top_cost > 0 else 0.0
        scores.append(mean + bonus - penalty)
    return scores


def choose_ucb(stats: Sequence[ModelStats], c: float, cost_weight: float = 0.0) -> int:
    """Index of the model with the highest UCB1 score; an untried model first, ties to the first.

    Args:
        stats: One entry per model; must not be empty.
        c: Weight of the exploration bonus.
        cost_weight: Weight of the relative cost penalty.
    """
    if not stats:
        raise ValueError("stats must not be empty")
    scores = ucb_scores(stats, c, cost_weight)
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def choose_thompson(stats: Sequence[ModelStats], rng: random.Random) -> int:
    """Index of the model with the highest draw from its Beta posterior of success.

    A success is an outcome that improved on its parent. Each model's probability of
    success has a uniform Beta(1, 1) prior, so the posterior is
    ``Beta(1 + successes, 1 + rewards - successes)``. Pending calls carry no information
    and are left out. (A Gaussian over improvements would weigh their size too, but it
    needs a scale prior per task; success counts need none.)

    Args:
        stats: One entry per model; must not be empty.
        rng: The caller's RNG.
    """
    if not stats:
        raise ValueError("stats must not be empty")
    draws = [rng.betavariate(1 + s.successes, 1 + max(0, s.rewards - s.successes)) for s in stats]
    return max(range(len(draws)), key=draws.__getitem__)


def choose(
    policy: str,
    stats: Sequence[ModelStats],
    weights: Sequence[float],
    rng: random.Random,
    *,
    ucb_c: float,
    cost_weight: float,
) -> int:
    """Index of the model ``policy`` picks for the next call.

    Args:
        policy: ``ucb``, ``thompson`` or ``weights``.
        stats: One entry per model.
        weights: One positive weight per model (used by ``weights``).
        rng: The caller's RNG.
        ucb_c: ``ucb``: weight of the exploration bonus.
        cost_weight: ``ucb``: weight of the cost penalty.

    Raises:
        ValueError: On an unknown policy or mismatched lengths.
    """
    if len(stats) != len(weights):
        raise ValueError(f"got {len(stats)} stats for {len(weights)} weights")
    if policy == "ucb":
        return choose_ucb(stats, ucb_c, cost_weight)
    if policy == "thompson":
        return choose_thompson(stats, rng)
    if policy == "weights":
        return choose_weighted(weights, rng)
    raise ValueError(f"unknown selection policy {policy!r}: use one of {', '.join(POLICIES)}")
