"""Pareto front over several objectives: a pure function."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def objective_vector(
    score: float, metrics: Mapping[str, object], objectives: Mapping[str, str]
) -> tuple[float, ...] | None:
    """Return the objectives of one evaluation as a vector to maximise (None if one is missing).

    Args:
        score: The evaluation's score (the objective named ``score``).
        metrics: Its metrics (every other objective name).
        objectives: Name -> ``maximize`` or ``minimize``, in order.
    """
    out = []
    for name, direction in objectives.items():
        value = score if name == "score" else metrics.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        out.append(float(value) if direction == "maximize" else -float(value))
    return tuple(out)


def pareto_front(points: Sequence[tuple[str, tuple[float, ...]]]) -> list[str]:
    """Return the ids of the non-dominated points, in input order (duplicates all kept).

    A point dominates another when it is at least as good on every objective (all to be
    maximised) and strictly better on one.
    """
    ordered = sorted(range(len(points)), key=lambda i: points[i][1], reverse=True)
    front: list[int] = []
    for i in ordered:
        vec = points[i][1]
        if not any(_dominates(points[j][1], vec) for j in front):
            front.append(i)
    return [points[i][0] for i in sorted(front)]


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Whether ``a`` dominates ``b``."""
    return all(x >= y for x, y in zip(a, b, strict=True)) and a != b
