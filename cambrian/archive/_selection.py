"""Parent and inspiration selection policies: pure functions over ``(program_id, score)``."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

#: One elite as the policies see it: its program id and its score.
Elite = tuple[str, float]


def rank_weights(scores: Sequence[float], maximize: bool) -> list[float]:
    """Return linear rank weights: the best score weighs ``n``, the worst ``1``.

    Equal scores share the better rank, so ties weigh the same.

    Args:
        scores: The elites' scores.
        maximize: True when higher scores are better.

    Returns:
        One positive weight per score, in input order.
    """
    n = len(scores)
    keyed = sorted(scores, reverse=maximize)
    first_rank: dict[float, int] = {}
    for rank, score in enumerate(keyed):
        first_rank.setdefault(score, rank)
    return [float(n - first_rank[score]) for score in scores]


def select_uniform(elites: Sequence[Elite], maximize: bool, rng: random.Random) -> str:
    """Pick an elite uniformly at random.

    Args:
        elites: Non-empty list of ``(program_id, score)``.
        maximize: Unused; kept so every policy has the same signature.
        rng: The caller's random generator.
    """
    return elites[rng.randrange(len(elites))][0]


def select_fitness(elites: Sequence[Elite], maximize: bool, rng: random.Random) -> str:
    """Pick an elite with probability proportional to its rank weight (better is likelier).

    Args:
        elites: Non-empty list of ``(program_id, score)``.
        maximize: True when higher scores are better.
        rng: The caller's random generator.
    """
    weights = rank_weights([score for _, score in elites], maximize)
    return rng.choices(elites, weights=weights, k=1)[0][0]


SELECTION_POLICIES: dict[str, Callable[[Sequence[Elite], bool, random.Random], str]] = {
    "uniform": select_uniform,
    "fitness": select_fitness,
}


def select_parent(
    policy: str, elites: Sequence[Elite], maximize: bool, rng: random.Random
) -> str | None:
    """Pick a parent among ``elites`` with the named policy.

    Args:
        policy: A key of ``SELECTION_POLICIES`` (``ArchiveConfig.selection``).
        elites: ``(program_id, score)`` of the island's cell elites, in a stable order.
        maximize: True when higher scores are better.
        rng: The caller's random generator.

    Returns:
        The chosen program id, or None when ``elites`` is empty.

    Raises:
        ValueError: If ``policy`` is unknown.
    """
    if policy not in SELECTION_POLICIES:
        raise ValueError(f"policy: unknown selection policy {policy!r}")
    if not elites:
        return None
    return SELECTION_POLICIES[policy](elites, maximize, rng)


def pick_inspirations(
    elites: Sequence[Elite],
    *,
    exclude: str,
    n: int,
    top_k: int,
    maximize: bool,
    rng: random.Random,
) -> list[str]:
    """Pick up to ``n`` elites: the ``top_k`` best, then random others; never ``exclude``.

    Args:
        elites: ``(program_id, score)`` candidates, in a stable order.
        exclude: The parent's id, never returned.
        n: How many to return at most.
        top_k: How many of them are the best elites (capped at ``n``).
        maximize: True when higher scores are better.
        rng: The caller's random generator.

    Returns:
        Distinct program ids, best first, then the random ones.
    """
    pool = {pid: score for pid, score in elites if pid != exclude}
    if n <= 0 or not pool:
        return []
    ranked = sorted(pool, key=lambda pid: -pool[pid] if maximize else pool[pid])
    chosen = ranked[: max(0, min(top_k, n))]
    rest = [pid for pid in pool if pid not in chosen]
    chosen += rng.sample(rest, k=min(n - len(chosen), len(rest)))
    return chosen
