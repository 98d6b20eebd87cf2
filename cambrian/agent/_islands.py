"""Which islands one controller proposes children on (``cambrian run --islands``)."""

from __future__ import annotations

from collections.abc import Sequence

from cambrian.errors import ConfigError


def choose_islands(chosen: Sequence[int] | None, count: int) -> tuple[int, ...]:
    """The islands one controller proposes children on.

    Args:
        chosen: Island indices (``cambrian run --islands``); None: every island.
        count: How many islands the archive has (``archive.islands``).

    Raises:
        ConfigError: ``chosen`` is empty, repeats an island or names one out of range.
    """
    if chosen is None:
        return tuple(range(count))
    if not chosen or len(set(chosen)) < len(chosen) or not set(chosen) <= set(range(count)):
        valid = f"choose distinct islands in 0..{count - 1} (archive.islands = {count})"
        raise ConfigError(f"islands {list(chosen)}: {valid}")
    return tuple(chosen)
