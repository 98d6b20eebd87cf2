"""Moving a work dir to a cluster node and its changes back, as tar archives in memory.

The controller packs the candidate's checked-out tree; the node unpacks it, runs the
evaluator, and sends back what the run changed: new or modified regular files, deleted
paths, and paths that stopped being regular files. Only links that stay inside the tree
travel to the node, none come back, and nothing is written outside the destination.

The way back is candidate-controlled, so it is capped (bytes and entries), protected
files travel first and outside the cap, and a file the node cannot read is noted, never
an error that would stop the run.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# The controller needs the result file and small outputs, not a candidate's bulk.
MAX_RETURN_BYTES = 64 * 1024 * 1024
MAX_RETURN_ENTRIES = 10_000

# size, mtime, ctime, inode, mode: ctime cannot be set back by the candidate
Snapshot = dict[str, tuple[int, int, int, int, int]]


@dataclass(frozen=True)
class Changes:
    """What a run did to its work dir.

    Attributes:
        archive: A tar of the new or modified regular files.
        deleted: Paths (relative) that existed before and are gone.
        replaced: Paths that were regular files and are now something else.
        skipped: Changed files not sent back (over the caps, or unreadable on the node).
    """

    archive: bytes = b""
    deleted: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()


def _walk(root: Path) -> dict[str, os.stat_result]:
    """Every entry under ``root`` (relative path -> lstat), links not followed."""
    entries: dict[str, os.stat_result] = {}
    for folder, dirs, files in os.walk(root, onerror=lambda error: None):
        for name in dirs + files:
            path = os.path.join(folder, name)
            try:
                entries[os.path.relpath(path, root)] = os.lstat(path)
            except OSError:
                continue
    return entries


def _link_inside(root: Path, rel: str) -> bool:
    """Whether the link at ``rel`` points to a path inside ``root``."""
    target = os.path.realpath(root / rel)
    return target == str(root) or target.startswith(f"{root}{os.sep}")


def pack_tree(root: Path) -> bytes:
    """A plain tar of the folders, regular files and inward links under ``root``."""
    root = Path(os.path.realpath(root))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for rel, info in sorted(_walk(root).items()):
            wanted = stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)
            if wanted or (stat.S_ISLNK(info.st_mode) and _link_inside(root, rel)):
                tar.add(root / rel, arcname=rel, recursive=False)
    return buffer.getvalue()


def unpack_tree(data: bytes, dest: Path) -> None:
    """Extract a tar made by ``pack_tree`` into a fresh folder ``dest``.

    The ``data`` extraction filter refuses absolute paths, ``..``, links pointing out
    and device files.
    """
    dest.mkdir(parents=True, exist_ok=True)
    if data:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
            tar.extractall(dest, filter="data")


def snapshot(root: Path) -> Snapshot:
    """Size, times, inode and mode of every entry, to find what a run changed."""
    return {
        rel: (i.st_size, i.st_mtime_ns, i.st_ctime_ns, i.st_ino, i.st_mode)
        for rel, i in _walk(root).items()
    }


def pack_changes(root: Path, before: Snapshot, protected: Sequence[str] = ()) -> Changes:
    """What changed under ``root`` since ``before``; see ``Changes``.

    Changed ``protected`` files (and files under protected folders) go first and do not
    count against the caps, so the controller's tamper check always sees them.
    """
    now = _walk(root)
    deleted = tuple(sorted(rel for rel in before if rel not in now))
    replaced, changed = [], []
    for rel, info in now.items():
        old = before.get(rel)
        if not stat.S_ISREG(info.st_mode):
            if old is not None and stat.S_ISREG(old[4]):
                replaced.append(rel)
            continue
        state = (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_mode)
        if old != state:
            changed.append(rel)
    guarded = tuple(p.rstrip("/") for p in protected)
    first = lambda rel: not any(rel == g or rel.startswith(f"{g}/") for g in guarded)  # noqa: E731
    changed.sort(key=lambda rel: (first(rel), rel))
    buffer, skipped = io.BytesIO(), []
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for count, rel in enumerate(changed):
            capped = count >= MAX_RETURN_ENTRIES or buffer.tell() >= MAX_RETURN_BYTES
            if first(rel) and (capped or buffer.tell() + now[rel].st_size > MAX_RETURN_BYTES):
                skipped.append(rel)
                continue
            try:
                tar.add(root / rel, arcname=rel, recursive=False)
            except OSError:  # unreadable to the node's worker: noted, never fatal
                skipped.append(rel)
    archive = buffer.getvalue() if len(skipped) < len(changed) else b""
    return Changes(archive, deleted, tuple(sorted(replaced)), tuple(skipped))


def _inside(root: Path, rel: str) -> Path | None:
    """``root / rel`` when it stays inside ``root`` without following links, else None."""
    path = Path(os.path.normpath(root / rel))
    if path == root or root not in path.parents:
        return None
    if any(parent.is_symlink() for parent in path.parents if root in parent.parents):
        return None
    return path


def _remove(path: Path) -> None:
    """Delete a file, link or folder tree."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _write(path: Path, source: io.BufferedReader, mode: int) -> None:
    """Replace ``path`` by a new file (never writing through a link or a hard link)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".cambrian-in-")
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(source, out)
    os.chmod(temp, mode & 0o755)
    os.replace(temp, path)


def apply_changes(root: Path, changes: Changes) -> list[str]:
    """Make ``root`` show what the run did on the node; return paths that could not be.

    Deleted paths are deleted; a file replaced by a link or folder becomes an empty
    folder here (so tamper checks see a non-file), never a link.
    """
    root = Path(os.path.realpath(root))
    refused: list[str] = []
    for rel in changes.deleted:
        path = _inside(root, rel)
        if path is not None and (path.exists() or path.is_symlink()):
            _remove(path)
    for rel in changes.replaced:
        path = _inside(root, rel)
        if path is not None:
            _remove(path)
            path.mkdir(parents=True, exist_ok=True)
    if not changes.archive:
        return refused
    with tarfile.open(fileobj=io.BytesIO(changes.archive), mode="r") as tar:
        for member in tar:
            path = _inside(root, member.name)
            source = tar.extractfile(member) if member.isreg() else None
            try:
                if path is None or source is None or member.issparse():
                    raise OSError("not a plain file inside the work dir")
                _write(path, source, member.mode)
            except OSError:
                refused.append(member.name)
    return refused


#: Most bytes of result files sent back from a node (each one, and all together).
MAX_RESULT_BYTES = 16 * 1024 * 1024


def read_results(folder: Path) -> dict[str, bytes]:
    """The regular files directly in the node's result ``folder`` (links never followed)."""
    found: dict[str, bytes] = {}
    total = 0
    for name in sorted(os.listdir(folder)):
        try:
            fd = os.open(folder / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                with os.fdopen(fd, "rb", closefd=False) as handle:
                    data = handle.read(MAX_RESULT_BYTES + 1)
                if len(data) <= MAX_RESULT_BYTES and total + len(data) <= MAX_RESULT_BYTES:
                    found[name] = data
                    total += len(data)
        finally:
            os.close(fd)
    return found


def write_results(folder: str, files: dict[str, bytes]) -> None:
    """Write the result files a node sent back into the controller's result ``folder``."""
    for name, data in files.items():
        if name and "/" not in name and name not in (".", "..") and isinstance(data, bytes):
            fd = os.open(
                os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            )
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
