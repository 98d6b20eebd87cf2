"""A warm Docker container's slot: the host dir bound into it, filled and copied back.

Each evaluation in warm mode copies the work dir into the slot, owned as a fresh
container would see it, and copies it back afterwards; what the candidate leaves there
that cannot be copied (a FIFO, an unreadable folder) is its failure, never the run's.
"""

from __future__ import annotations

import dataclasses
import os
import shutil

from cambrian.sandbox._protect import make_readonly
from cambrian.sandbox._tier import CANDIDATE_UID, Tree
from cambrian.sandbox._workdir import (
    chown_tree,
    copy_tree,
    fresh_dir,
    make_private,
    open_tree,
    sticky_parents,
)


@dataclasses.dataclass
class Slot:
    """A warm container and the host dir bound into it."""

    container_id: str
    dir: str
    gpus: tuple[str, ...]


def fill_slot(tree: Tree, inner: Tree, *, as_root: bool) -> list[str]:
    """Copy the work dir into the slot, owned as in a fresh container; its sticky dirs."""
    fresh_dir(inner.root, 0o755)
    if inner.results:
        fresh_dir(inner.results, 0o700)
    copy_tree(tree.root, inner.root)
    if not as_root:
        open_tree(inner.root, inner.protected, inner.private)
        return []
    keep = [*inner.protected, *inner.private]
    chown_tree(inner.root, CANDIDATE_UID, CANDIDATE_UID, skip=keep)
    make_readonly(inner.protected)
    make_private(inner.private)
    return sticky_parents(inner.root, keep)


def copy_back(work: str, root: str, owner: os.stat_result, sticky: list[str]) -> str:
    """Copy a slot's work dir back to ``root``; why it failed, or "" when it did not."""
    try:
        modes = {rel: os.stat(os.path.join(root, rel)).st_mode for rel in sticky}
        copy_tree(work, root)
        chown_tree(root, owner.st_uid, owner.st_gid)
        for rel, mode in modes.items():
            os.chmod(os.path.join(root, rel), mode)
    except RecursionError:  # a folder chain deeper than Python's stack
        return "a folder tree too deep to copy"
    except (OSError, shutil.Error) as exc:
        return str(exc)[:200]
    return ""
