"""Work-dir ownership and copies.

When cambrian runs as root, the candidate's uid (65534) cannot write the root-owned
work dir, so the tree is handed to that uid for the run and back afterwards; the
evaluator's own files stay root's. Nothing
here follows a symlink: a candidate's link to a host file must never retarget a chown or
a copy onto the host file.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Mapping, Sequence

from cambrian.sandbox._protect import make_readonly, restore_modes

SANDBOX_UID = 65534


_SETID = stat.S_ISUID | stat.S_ISGID


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
    """Replace the contents of ``dst`` by a copy of ``src`` (symlinks copied as links).

    Set-user-ID and set-group-ID bits are dropped: copied by root, a candidate's
    setuid file would otherwise be root's until its owner is set back.
    """
    clear_dir(dst)
    shutil.copytree(
        src,
        dst,
        symlinks=True,
        dirs_exist_ok=True,
        ignore_dangling_symlinks=True,
        copy_function=_copy_plain,
    )
    for parent, dirs, _ in os.walk(dst):
        for name in dirs:
            _drop_setid(os.path.join(parent, name))


def _copy_plain(source: str, target: str) -> None:
    """``shutil.copy2`` without the set-ID bits (the file is never setuid on the way).

    Raises:
        shutil.SpecialFileError: ``source`` is not a regular file (a FIFO, a socket,
            a device): opening one could block for ever.
    """
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb", closefd=True) as reader:
        info = os.fstat(reader.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise shutil.SpecialFileError(f"{source} is not a regular file")
        os.set_blocking(reader.fileno(), True)
        with open(target, "wb") as writer:
            os.fchmod(writer.fileno(), 0o600)
            shutil.copyfileobj(reader, writer)
            os.fchmod(writer.fileno(), stat.S_IMODE(info.st_mode) & ~_SETID)
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))


def _drop_setid(path: str) -> None:
    """Clear the set-user-ID and set-group-ID bits of ``path`` (never through a link)."""
    info = os.lstat(path)
    if info.st_mode & _SETID and not stat.S_ISLNK(info.st_mode):
        os.chmod(path, stat.S_IMODE(info.st_mode) & ~_SETID)


def make_private(paths: Sequence[str]) -> dict[str, int]:
    """Make ``paths`` readable by their owner only (folders 0700, files 0600), recursively.

    Returns:
        The original modes, for ``restore_modes``.
    """
    saved: dict[str, int] = {}
    for top in paths:
        walk = [(top, [], [])] if not os.path.isdir(top) else list(os.walk(top))
        for parent, dirs, files in walk:
            for path in [parent, *(os.path.join(parent, n) for n in dirs + files)]:
                try:
                    st = os.lstat(path)
                    if stat.S_ISLNK(st.st_mode) or path in saved:
                        continue
                    saved[path] = stat.S_IMODE(st.st_mode)
                    os.chmod(path, 0o700 if stat.S_ISDIR(st.st_mode) else 0o600)
                except OSError:
                    continue
    return saved


def grant_tree(
    root: str, protected: Sequence[str], private: Sequence[str], uid: int = SANDBOX_UID
) -> Callable[[], None]:
    """Hand the work dir to the candidate's uid for one run (needs root); return the undo.

    Everything becomes ``uid``'s except the protected and private paths, which stay
    their owner's, read-only (protected) or owner-only (private); the folders above them
    become root-owned and sticky, so the candidate cannot rename them away either.
    """
    owner = os.stat(root)
    keep = [*protected, *private]
    chown_tree(root, uid, uid, skip=keep)
    hidden = make_private(private)
    readonly = make_readonly(protected)
    parents = _parent_dirs(root, keep)
    modes = {path: stat.S_IMODE(os.lstat(path).st_mode) for path in parents}
    sticky_parents(root, keep)

    def undo() -> None:
        chown_tree(root, owner.st_uid, owner.st_gid)
        for path, mode in modes.items():
            if not os.path.islink(path):
                os.chmod(path, mode)
        restore_modes(readonly)
        restore_modes(hidden)

    return undo


def _parent_dirs(top: str, paths: Sequence[str]) -> list[str]:
    """The folders ``sticky_parents`` changes for ``paths``, absolute."""
    found = {os.path.normpath(top)}
    for path in paths:
        rel = os.path.relpath(os.path.dirname(path), top)
        parts = [] if rel == "." else rel.split(os.sep)
        for depth in range(1, len(parts) + 1):
            found.add(os.path.join(top, *parts[:depth]))
    return sorted(found)


def open_tree(root: str, protected: Sequence[str], private: Sequence[str]) -> Callable[[], None]:
    """Let every uid write the work dir for one run (no root to chown it); return the undo.

    Folders become 0777 and files gain write bits for all, except the protected paths
    (read-only) and the private ones (owner-only); used where the candidate's uid is not
    ours and cambrian cannot give it the tree.
    """
    keep = {*protected, *private}
    saved: dict[str, int] = {}
    for parent, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.path.join(parent, d) not in keep]
        for path in [parent, *(os.path.join(parent, n) for n in dirs + files)]:
            if path in keep or path in saved:
                continue
            try:
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    continue
                saved[path] = stat.S_IMODE(st.st_mode)
                os.chmod(path, 0o777 if stat.S_ISDIR(st.st_mode) else saved[path] | 0o666)
            except OSError:
                continue
    hidden = make_private(private)
    readonly = make_readonly(protected)

    def undo() -> None:
        restore_modes(saved)
        restore_modes(readonly)
        restore_modes(hidden)

    return undo


def copy_results(src: str, dst: str, limit: int = 64 << 20) -> None:
    """Copy the regular files directly in ``src`` to ``dst``, links never followed."""
    for name in os.listdir(src):
        try:
            fd = os.open(os.path.join(src, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode) and info.st_size <= limit:
                with open(os.path.join(dst, name), "wb") as out:
                    out.write(os.read(fd, limit))
        finally:
            os.close(fd)


def fresh_dir(path: str, mode: int) -> None:
    """Make sure the folder ``path`` exists (the wipe may have emptied the slot)."""
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)


def move_path(value: str, prefixes: Mapping[str | None, str]) -> str:
    """``value`` with a leading host path replaced by its place in the slot."""
    for old, new in prefixes.items():
        if old and (value == old or value.startswith(f"{old}/")):
            return new + value[len(old) :]
    return value


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Delete a work or temporary folder, re-adding write bits the candidate removed.

    A folder chain deeper than Python's recursion (candidate code can make one) is
    removed by ``rm``, which walks it without recursing.
    """
    path = os.fspath(path)
    try:
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            return
        _chmod_quietly(path)
        for parent, dirs, _files in os.walk(path):
            for name in dirs:  # top-down: fixed before os.walk descends into it
                _chmod_quietly(os.path.join(parent, name))
        shutil.rmtree(path, ignore_errors=True)
    except RecursionError:
        subprocess.run(["rm", "-rf", "--one-file-system", "--", path], check=False)


def _chmod_quietly(path: str) -> None:
    """Give a directory back its owner permissions; never follows a symlink."""
    try:
        if not os.path.islink(path):
            os.chmod(path, 0o700)
    except OSError:
        pass
