"""Parent and inspiration selection policies: pure functions over elite rows.

Every policy has the signature ``policy(elites, maximize, rng, params) -> program_id`` and
reads only its inputs, so it is tested on fixed rows without a database. ``greedy`` and
``random`` are the baselines of the search-quality benchmark.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from typing import NamedTuple

from cambrian.config import SelectionConfig


class EliteRow(NamedTuple):
    """One cell elite as the policies see it.

    Attributes:
        program_id: The elite's program id.
        score: Its score.
        children: Its evaluated children.
        successes: Those children that beat it.
        clade_trials: Evaluated descendants (children included) up to ``clade_depth``.
        clade_successes: Those descendants that beat their own parent.
    """

    program_id: str
    score: float
    children: int = 0
    successes: int = 0
    clade_trials: int = 0
    clade_successes: int = 0


#: Back-compatible name: ``(program_id, score)`` tuples are accepted wherever rows are.
Elite = EliteRow
Policy = Callable[[Sequence[EliteRow], bool, random.Random, SelectionConfig], str]


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


def normalized_scores(scores: Sequence[float], maximize: bool, how: str) -> list[float]:
    """Return scores on a common scale where higher is better.

    Args:
        scores: Raw scores.
        maximize: True when higher raw scores are better.
        how: ``rank`` (best 1, worst 1/n, ties share the better rank) or ``zscore``
            (standardised; all zeros when every score is equal).
    """
    if not scores:
        return []
    if how == "rank":
        n = len(scores)
        return [w / n for w in rank_weights(scores, maximize)]
    if how != "zscore":
        raise ValueError(f"how: unknown normalisation {how!r}; use rank or zscore")
    signed = [s if maximize else -s for s in scores]
    mean = statistics.fmean(signed)
    std = statistics.pstdev(signed)
    return [0.0 if std == 0 else (s - mean) / std for s in signed]


def softmax(values: Sequence[float], temperature: float) -> list[float]:
    """Return softmax probabilities of ``values / temperature`` (max-shifted, so no overflow)."""
    top = max(values)
    weights = [math.exp((v - top) / temperature) for v in values]
    total = sum(weights)
    return [w / total for w in weights]


def select_uniform(
    elites: Sequence[EliteRow], maximize: bool, rng: random.Random, params: SelectionConfig
) -> str:
    """Classic MAP-Elites: every elite is equally likely."""
    return elites[rng.randrange(len(elites))].program_id


def select_fitness(
    elites: Sequence[EliteRow], maximize: bool, rng: random.Random, params: SelectionConfig
) -> str:
    """Softmax over rank- or z-normalised scores (``params.normalize``, ``temperature``)."""
    norm = normalized_scores([e.score for e in elites], maximize, params.normalize)
    weights = softmax(norm, params.temperature)
    return rng.choices(elites, weights=weights, k=1)[0].program_id


def power_law_weights(scores: Sequence[float], maximize: bool, alpha: float) -> list[float]:
    """Return ``rank ** -alpha`` with rank 1 the best (ties share the better rank)."""
    n = len(scores)
    return [(n - w + 1) ** -alpha for w in rank_weights(scores, maximize)]


def select_power_law(
    elites: Sequence[EliteRow], maximize: bool, rng: random.Random, params: SelectionConfig
) -> str:
    """Power law by rank: the r-th best weighs ``r ** -alpha``."""
    weights = power_law_weights([e.score for e in elites], maximize, params.alpha)
    return rng.choices(elites, weights=weights, k=1)[0].program_id


def dgm_weights(elites: Sequence[EliteRow], maximize: bool, k: float) -> list[float]:
    """Return DGM weights: ``sigmoid(k * (score - median)) / (1 + children)``."""
    signed = [e.score if maximize else -e.score for e in elites]
    median = statistics.median(signed)
    out = []
    for elite, score in zip(elites, signed, strict=True):
        x = max(-60.0, min(60.0, k * (score - median)))
        out.append(1.0 / (1.0 + math.exp(-x)) / (1 + elite.children))
    return out


def select_dgm(
    elites: Sequence[EliteRow], maximize: bool, rng: random.Random, params: SelectionConfig
) -> str:
    """Darwin Gödel Machine: good scores, few children (``params.dgm_k``)."""
    weights = dgm_weights(elites, maximize, params.dgm_k)
    return rng.choices(elites, weights=weights, k=1)[0].program_id


def select_thompson(
    elites: Sequence[EliteRow], maximize: bool, rng: random.Random, params: SelectionConfig
) -> str:
    """Clade Thompson sampling (HGM): draw Beta(1 + successes, 1 + failures) of each clade.

    A success is a descendant that beat its own parent; the highest draw wins.
    """
    draws = [
        rng.betavariate(1 + e.clade_successes, 1 + max(0, e.clade_trials - e.clade_successes))
        for e in elites
    ]
    return elites[max(range(len(elites)), key=draws.__getitem__)].program_id


def select_tournament(
    elites: Sequence[EliteRow], maximize: bool, rng: random.Random, params: SelectionConfig
) -> str:
    """Tournament: the best of ``params.tournament`` distinct random elites (first on ties)."""
    picked = sorted(rng.sample(range(len(elites)), k=min(params.tournament, len(elites))))
    sign = 1.0 if maximize else -1.0
    return elites[max(picked, key=lambda i: (sign * elites[i].score, -i))].program_id


def select_greedy(
    elites: Sequence[EliteRow], maximize: bool, rng: random.Random, params: SelectionConfig
) -> str:
    """Greedy baseline: always the best elite (the first in the given order on ties)."""
    sign = 1.0 if maximize else -1.0
    return elites[max(range(len(elites)), key=lambda i: (sign * elites[i].score, -i))].program_id


def select_random(
    elites: Sequence[EliteRow], maximize: bool, rng: random.Random, params: SelectionConfig
) -> str:
    """Random-parent baseline: uniform over the given rows.

    The archive does not hand it the cell elites but draws from every evaluated program
    of the island (``draw_by_rejection``); the rows are only its fallback pool.
    """
    return elites[rng.randrange(len(elites))].program_id


def draw_by_rejection(
    rng: random.Random,
    high: int,
    lookup: Callable[[list[int]], dict[int, str]],
    batch: int = 16,
    rounds: int = 4,
) -> str | None:
    """Draw uniformly among the keys in ``1..high`` that ``lookup`` accepts.

    Each round draws ``batch`` keys uniformly and asks ``lookup`` (one query) which of them
    are accepted; the first accepted draw wins. That is rejection sampling, so the result
    is exactly uniform over the accepted keys, and it costs a few index probes instead of
    a count over the whole table.

    Args:
        rng: The caller's random generator.
        high: The largest key (keys start at 1).
        lookup: Maps a list of keys to ``{key: program_id}`` for the accepted ones.
        batch: Keys drawn per round.
        rounds: Rounds before giving up.

    Returns:
        The accepted key's program id, or None when every draw missed (the caller then
        falls back to an exact count, which is also uniform).
    """
    for _ in range(rounds if high >= 1 else 0):
        draws = [rng.randint(1, high) for _ in range(batch)]
        found = lookup(draws)
        for key in draws:
            if key in found:
                return found[key]
    return None


SELECTION_POLICIES: dict[str, Policy] = {
    "uniform": select_uniform,
    "fitness": select_fitness,
    "power_law": select_power_law,
    "dgm": select_dgm,
    "thompson": select_thompson,
    "tournament": select_tournament,
    "greedy": select_greedy,
    "random": select_random,
}

#: Policies that need the children and clade counters, not only the scores.
COUNTER_POLICIES = frozenset({"dgm", "thompson"})


def select_parent(
    policy: str,
    elites: Sequence[EliteRow | tuple],
    maximize: bool,
    rng: random.Random,
    params: SelectionConfig | None = None,
) -> str | None:
    """Pick a parent among ``elites`` with the named policy.

    Args:
        policy: A key of ``SELECTION_POLICIES`` (``ArchiveConfig.selection``).
        elites: Elite rows (or ``(program_id, score)`` tuples) in a stable order.
        maximize: True when higher scores are better.
        rng: The caller's random generator.
        params: The policies' parameters (``ArchiveConfig.policy``); None: the defaults.

    Returns:
        The chosen program id, or None when ``elites`` is empty.

    Raises:
        ValueError: If ``policy`` is unknown.
    """
    if policy not in SELECTION_POLICIES:
        raise ValueError(f"policy: unknown selection policy {policy!r}")
    if not elites:
        return None
    rows = [e if isinstance(e, EliteRow) else EliteRow(*e) for e in elites]
    return SELECTION_POLICIES[policy](rows, maximize, rng, params or SelectionConfig())


def pick_inspirations(
    elites: Sequence[EliteRow | tuple],
    *,
    exclude: str,
    n: int,
    top_k: int,
    maximize: bool,
    rng: random.Random,
) -> list[str]:
    """Pick up to ``n`` elites: the ``top_k`` best, then diverse random others; never ``exclude``.

    Args:
        elites: Elite rows or ``(program_id, score)`` tuples, in a stable order.
        exclude: The parent's id, never returned.
        n: How many to return at most.
        top_k: How many of them are the best elites (capped at ``n``).
        maximize: True when higher scores are better.
        rng: The caller's random generator.

    Returns:
        Distinct program ids, best first, then the random ones.
    """
    pool = {e[0]: e[1] for e in elites if e[0] != exclude}
    if n <= 0 or not pool:
        return []
    ranked = sorted(pool, key=lambda pid: -pool[pid] if maximize else pool[pid])
    chosen = ranked[: max(0, min(top_k, n))]
    rest = [pid for pid in pool if pid not in chosen]
    chosen += rng.sample(rest, k=min(n - len(chosen), len(rest)))
    return chosen
