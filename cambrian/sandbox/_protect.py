"""Protected (read-only) paths: resolving them, and the chmod fallback.

Bubblewrap binds protected paths read-only, which holds even against root. Without it,
the rlimits backend can only clear the write bits for the duration of the run: a
candidate running as the same uid can ``chmod`` them back, and root ignores them
entirely. The caller must verify the integrity of protected files after the run.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH


def resolve_readonly(
    workdir: Path, readonly: Sequence[str], *, what: str = "readonly"
) -> list[str]:
    """Absolute real paths of the ``readonly`` entries that exist inside ``workdir``.

    Entries that do not exist, or whose symlinks lead outside ``workdir``, are skipped:
    there is nothing of the task's to protect there.

    Raises:
        ValueError: An entry is absolute or climbs out with ``..`` (caller misuse); the
            message names the argument ``what``.
    """
    if isinstance(readonly, str):
        raise ValueError(f"{what} must be a sequence of paths, not a single str")
    root = os.path.realpath(workdir)
    found: list[str] = []
    for entry in readonly:
        rel = PurePosixPath(entry)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ValueError(f"{what}: {entry!r} must be a relative path inside workdir")
        real = os.path.realpath(os.path.join(root, *rel.parts))
        inside = real == root or real.startswith(root.rstrip("/") + "/")
        if inside and os.path.lexists(real) and real not in found:
            found.append(real)
    return found


def _tree(path: str) -> list[str]:
    """``path`` and, for a directory, everything below it (symlinks excluded)."""
    if not os.path.isdir(path):
        return [path]
    paths = [path]
    for parent, dirs, files in os.walk(path):
        paths += [os.path.join(parent, name) for name in dirs + files]
    return paths


def make_readonly(paths: Sequence[str]) -> dict[str, int]:
    """Clear the write bits of ``paths`` (recursively); best effort.

    Returns:
        The original modes, for ``restore_modes``.
    """
    saved: dict[str, int] = {}
    for top in paths:
        for path in _tree(top):
            try:
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    continue
                saved[path] = stat.S_IMODE(st.st_mode)
                os.chmod(path, saved[path] & ~_WRITE_BITS)
            except OSError:
                continue
    return saved


def restore_modes(saved: dict[str, int]) -> None:
    """Put back the modes recorded by ``make_readonly`` (so the work dir stays deletable)."""
    for path, mode in saved.items():
        try:
            # A candidate may have swapped the file for a symlink: never chmod its target.
            if not stat.S_ISLNK(os.lstat(path).st_mode):
                os.chmod(path, mode)
        except OSError:
            continue
