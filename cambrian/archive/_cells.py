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
