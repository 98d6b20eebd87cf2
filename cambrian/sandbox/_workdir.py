"""Work-dir ownership and copies for container backends.

When cambrian runs as root, the container's user (65534) cannot write the root-owned
work dir, so the tree is handed to that uid for the run and back afterwards. Nothing
here follows a symlink: a candidate's link to a host file must never retarget a chown or
a copy onto the host file.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Sequence

SANDBOX_UID = 65534


def chown_tree(root: str, uid: int, gid: int, *, skip: Sequence[str] = ()) -> None:
    """``lchown`` ``root`` and everything below it, except the ``skip`` paths (absolute)."""
    skipped = set(skip)
    for parent, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.path.join(parent, d) not in skipped]
        for name in [*dirs, *files]:
            path = os.path.join(parent, name)
            if path not in skipped:
                _lchown(path, uid, gid)
    _lchown(root, uid, gid)


def _lchown(path: str, uid: int, gid: int) -> None:
    """Change the owner of ``path`` itself (never a symlink's target); best effort."""
    try:
        os.chown(path, uid, gid, follow_symlinks=False)
    except OSError:
        pass


def sticky_parents(top: str, paths: Sequence[str]) -> list[str]:
    """Make the directories from ``top`` down to each of ``paths`` root-owned and sticky.

    A sticky, root-owned directory lets the sandbox user create files but not delete or
    rename root's files in it, so protected files cannot be swapped out (needs root).

    Returns:
        The directories changed, relative to ``top``.
    """
    changed: set[str] = set()
    for path in paths:
        rel = os.path.relpath(os.path.dirname(path), top)
        parts = [] if rel == "." else rel.split(os.sep)
        for depth in range(len(parts) + 1):
            changed.add(os.path.join(*parts[:depth]) if depth else ".")
    for rel in changed:
        full = os.path.normpath(os.path.join(top, rel))
        if not os.path.islink(full):
            os.chown(full, 0, 0, follow_symlinks=False)
            os.chmod(full, 0o1777)
    return sorted(changed)


def clear_dir(path: str) -> None:
    """Delete everything inside ``path`` (kept itself), re-adding removed write bits."""
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if os.path.isdir(full) and not os.path.islink(full):
            for parent, dirs, _ in os.walk(full):
                for d in dirs:
                    _chmod_dir(os.path.join(parent, d))
            _chmod_dir(full)
            shutil.rmtree(full, ignore_errors=True)
        else:
            try:
                os.unlink(full)
            except OSError:
                pass


def _chmod_dir(path: str) -> None:
    """Give a directory back its owner permissions (never through a symlink)."""
    try:
        if not os.path.islink(path):
            os.chmod(path, 0o700 | stat.S_IMODE(os.lstat(path).st_mode))
    except OSError:
        pass


def copy_tree(src: str, dst: str) -> None:
    """Replace the contents of ``dst`` by a copy of ``src`` (symlinks copied as links)."""
    clear_dir(dst)
    shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True, ignore_dangling_symlinks=True)
