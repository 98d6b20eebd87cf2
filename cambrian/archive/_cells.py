"""MAP-Elites cell placement: pure functions from features to a cell key."""

from __future__ import annotations

import math
from collections.abc import Mapping

from cambrian.config import FeatureBins

#: The key of the single cell of an island when no feature axes are configured.
ELITISM_KEY = "0"


def bin_index(value: object, axis: FeatureBins) -> int:
    """Return the bin of ``value`` on ``axis``.

    Bins split ``[axis.min, axis.max]`` into ``axis.bins`` equal parts; values outside
    the range clamp to the edge bins. A missing, non-numeric or NaN value falls in bin 0.

    Args:
        value: The feature value reported by the evaluator (any type).
        axis: The axis definition from ``ArchiveConfig.features``.

    Returns:
        An integer in ``[0, axis.bins - 1]``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    number = float(value)
    if math.isnan(number):
        return 0
    fraction = (number - axis.min) / (axis.max - axis.min)
    if fraction <= 0:
        return 0
    if fraction >= 1:
        return axis.bins - 1
    return min(int(fraction * axis.bins), axis.bins - 1)


def cell_key(features: Mapping[str, object], axes: Mapping[str, FeatureBins]) -> str:
    """Return the cell key of a program, e.g. ``"3,5"``.

    Args:
        features: The evaluation's MAP-Elites descriptors.
        axes: The configured axes, in their configured order.

    Returns:
        The bin indices joined by commas, or ``"0"`` when no axes are configured
        (one cell per island: plain elitism).
    """
    if not axes:
        return ELITISM_KEY
    return ",".join(str(bin_index(features.get(name), axis)) for name, axis in axes.items())


def is_better(score: float, incumbent: float | None, maximize: bool) -> bool:
    """Return whether ``score`` strictly beats ``incumbent`` (always True for an empty cell).

    Args:
        score: The challenger's score.
        incumbent: The cell elite's score, or None when the cell is empty.
        maximize: True when higher scores are better.
    """
    if incumbent is None:
        return True
    return score > incumbent if maximize else score < incumbent


def unit_point(features: Mapping[str, object], axes: Mapping[str, FeatureBins]) -> list[float]:
    """Return the features scaled to ``[0, 1]`` per axis (clamped; missing or NaN: 0)."""
    point = []
    for name, axis in axes.items():
        value = features.get(name)
        number = float(value) if isinstance(value, int | float) else math.nan
        if isinstance(value, bool) or math.isnan(number):
            number = axis.min
        point.append(min(1.0, max(0.0, (number - axis.min) / (axis.max - axis.min))))
    return point


def cvt_centroids(dims: int, cells: int, samples: int, seed: int) -> list[list[float]]:
    """Fit ``cells`` centroids in the unit cube by k-means over a seeded uniform sample.

    Computed once per run and stored, so cells never move during the run.

    Args:
        dims: Number of feature axes.
        cells: Number of centroids.
        samples: Size of the uniform sample (at least ``cells`` are drawn).
        seed: Seed of the sample and of the initial centroids.
    """
    import numpy as np  # only CVT runs pay numpy's import

    rng = np.random.default_rng(seed)
    points = rng.random((max(samples, cells), dims))
    centroids = points[rng.choice(len(points), size=cells, replace=False)].copy()
    for _ in range(20):
        nearest = _nearest(points, centroids)
        for index in range(cells):
            members = points[nearest == index]
            if len(members):
                centroids[index] = members.mean(axis=0)
    return centroids.round(6).tolist()


def _nearest(points, centroids):  # noqa: ANN001, ANN202 - numpy arrays
    """Index of the nearest centroid of each point."""
    distances = ((points[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    return distances.argmin(axis=1)


def cvt_key(features: Mapping[str, object], axes: Mapping[str, FeatureBins], centroids) -> str:  # noqa: ANN001
    """Return the CVT cell key ``"c<index>"`` of the nearest centroid (first on ties)."""
    point = unit_point(features, axes)
    best, best_d = 0, math.inf
    for index, centroid in enumerate(centroids):
        d = sum((a - b) ** 2 for a, b in zip(point, centroid, strict=True))
        if d < best_d:
            best, best_d = index, d
    return f"c{best}"
