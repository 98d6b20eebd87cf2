"""``GitLineage``: one bare git repository per run, one commit per candidate."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from gitdb.util import bin_to_hex, hex_to_bin

from cambrian.archive._gitobjects import EXECUTABLE, FILE, SUBMODULE, SYMLINK, TREE, ObjectStore
from cambrian.errors import ArchiveError

BASE_REF = "refs/cambrian/base"
PROGRAM_REFS = "refs/cambrian/programs"
SNAPSHOTS = "cambrian-snapshots"
_SKIP_DIRS = {".git", "__pycache__", ".cambrian"}
_GIT_ENV_DROP = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY")


class GitLineage:
    """The run's lineage: a bare git repository whose commits are the programs.

    Each candidate is a commit whose git parent is its parent program's commit, so
    ``git --git-dir lineage.git log refs/cambrian/programs/<id>`` shows its ancestry.
    Commits are written in-process (no subprocess per candidate). Nothing touches the
    disk until a method is called.

    Args:
        path: The bare repository, e.g. ``<run-dir>/lineage.git``.
    """

    def __init__(self, path: Path) -> None:
        self._path = Path(path).absolute()
        self._store: ObjectStore | None = None
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        """The bare repository's folder."""
        return self._path

    def init_from(self, source: Path) -> str:
        """Create the repository with ``source`` as the base commit (idempotent).

        When the repository already has a base, it is returned unchanged. When ``source``
        is (inside) a git work tree with commits, its committed HEAD is imported (only the
        ``source`` subfolder's tree when it is a subfolder); uncommitted changes are ignored.
        Otherwise every file of the folder is committed, skipping ``.git``, ``__pycache__``,
        ``*.pyc``, folders named ``.cambrian`` and the run dir holding this repository.

        Args:
            source: The task folder.

        Returns:
            The base commit sha (also stored as ``refs/cambrian/base``).
        """
        existing = self._resolve(BASE_REF)
        if existing is not None:
            return existing
        source = Path(source).resolve()
        if not source.is_dir():
            raise ValueError(f"source: {source} is not a folder")
        self._path.mkdir(parents=True, exist_ok=True)
        _git(["init", "--bare", "--quiet", str(self._path)])
        base = self._import_git(source)
        if base is None:
            tree = self._write_folder(source) or self._objects().write_tree([])
            base = self._objects().write_commit(tree, [], f"cambrian base: {source.name}")
        self._write_ref(BASE_REF, base)
        return base

    def base(self) -> str:
        """Return the base commit sha.

        Raises:
            ArchiveError: If ``init_from`` never ran for this repository.
        """
        found = self._resolve(BASE_REF)
        if found is None:
            raise ArchiveError(f"{self._path} has no base commit; initialise the run first")
        return found

    def list_files(self, commit: str) -> list[str]:
        """Return every file path (posix, relative) of ``commit``'s tree, sorted."""
        store = self._objects()
        files = store.walk(store.commit_tree(commit))
        return sorted(path for path, _, mode in files if mode != SUBMODULE)

    def read_files(self, commit: str, paths: Iterable[str]) -> dict[str, str]:
        """Return ``{path: text}`` for those ``paths`` that are files of ``commit``.

        Text is decoded as UTF-8; undecodable bytes become U+FFFD.
        """
        store = self._objects()
        tree = store.commit_tree(commit)
        out: dict[str, str] = {}
        for path in paths:
            found = store.lookup(tree, path.strip("/"))
            if found is not None and found[1] in (FILE, EXECUTABLE):
                out[path] = store.read(found[0])[1].decode("utf-8", errors="replace")
        return out

    def commit(self, parent: str, changes: Mapping[str, str], message: str) -> tuple[str, str]:
        """Commit ``parent``'s tree with ``changes`` applied, as a child of ``parent``.

        Args:
            parent: The parent program's commit sha.
            changes: Relative posix path -> full new text; nested and new files allowed.
            message: The commit message.

        Returns:
            ``(commit_sha, tree_sha)``; equal trees give equal tree shas.

        Raises:
            ValueError: If a path is absolute, empty, or has ``.``, ``..`` or ``.git`` parts.
        """
        encoded = {_checked_path(path): text.encode() for path, text in changes.items()}
        store = self._objects()
        tree = store.apply(store.commit_tree(parent), encoded)
        return store.write_commit(tree, [parent], message), bin_to_hex(tree).decode()

    def tree_of(self, commit: str) -> str:
        """Return the tree sha of ``commit``."""
        return bin_to_hex(self._objects().commit_tree(commit)).decode()

    def set_ref(self, program_id: str, commit: str) -> None:
        """Point ``refs/cambrian/programs/<program_id>`` at ``commit``."""
        if not program_id or not program_id.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"program_id: {program_id!r} is not a valid ref name")
        self._write_ref(f"{PROGRAM_REFS}/{program_id}", commit)

    def checkout(self, commit: str, dest: Path) -> None:
        """Materialise ``commit``'s full tree into ``dest`` (a new or empty folder).

        Copies a cached extraction of the base tree (independent copies, never links, so
        the candidate cannot alter the cache), then writes the files that differ from base.
        """
        dest = Path(dest)
        if dest.exists() and any(dest.iterdir()):
            raise ValueError(f"dest: {dest} is not empty")
        store = self._objects()
        base_tree = store.commit_tree(self.base())
        snapshot = self._snapshot(base_tree)
        copy = shutil.copy  # content and mode: an independent file, never a link to the cache
        shutil.copytree(snapshot, dest, symlinks=True, dirs_exist_ok=True, copy_function=copy)
        for path, binsha, mode in store.changed(base_tree, store.commit_tree(commit)):
            self._materialise(dest, path, binsha, mode)

    def diff(self, old: str, new: str) -> str:
        """Return the unified diff between two commits (``git diff old new``)."""
        args = ["diff", "--no-color", "--no-ext-diff", old, new]
        return _git(args, git_dir=self._path)

    def close(self) -> None:
        """Stop the helper ``git cat-file`` processes (reopened lazily if used again)."""
        with self._lock:
            if self._store is not None:
                self._store.close()
            self._store = None

    def _objects(self) -> ObjectStore:
        """Return the object store, opening the repository on first use."""
        with self._lock:
            if self._store is None:
                if not (self._path / "objects").is_dir():
                    raise ArchiveError(f"{self._path} is not a lineage repository; init it first")
                self._store = ObjectStore(self._path)
            return self._store

    def _resolve(self, ref: str) -> str | None:
        """Return the sha a ref points to (loose or packed), or None."""
        loose = self._path / ref
        if loose.is_file():
            return loose.read_text().strip() or None
        packed = self._path / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                sha, _, name = line.partition(" ")
                if name == ref:
                    return sha
        return None

    def _write_ref(self, ref: str, commit: str) -> None:
        """Write a loose ref atomically."""
        if len(commit) != 40 or len(hex_to_bin(commit)) != 20:
            raise ValueError(f"commit: {commit!r} is not a full sha")
        target = self._path / ref
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(commit + "\n")
        os.replace(tmp, target)

    def _import_git(self, source: Path) -> str | None:
        """Fetch the committed HEAD of the work tree holding ``source``; None if there is none."""
        try:
            top = Path(_git(["rev-parse", "--show-toplevel"], cwd=source).strip()).resolve()
            head = _git(["rev-parse", "--verify", "HEAD^{commit}"], cwd=source).strip()
            subtree = _git(["rev-parse", "HEAD:./"], cwd=source).strip()
        except ArchiveError:
            return None
        _git(["fetch", "--no-tags", "--quiet", str(top), "+HEAD:refs/cambrian/source"], self._path)
        if top == source:
            return head
        prefix = source.relative_to(top).as_posix()
        message = f"cambrian base: {prefix} at {head[:12]}"
        return self._objects().write_commit(hex_to_bin(subtree), [head], message)

    def _write_folder(self, folder: Path) -> bytes | None:
        """Store a folder's files as a tree (None when it holds no file)."""
        store = self._objects()
        entries = []
        skip = {self._path.resolve(), self._path.resolve().parent}
        for item in sorted(os.scandir(folder), key=lambda e: e.name):
            path = Path(item.path)
            if item.name == ".git":
                continue
            if item.is_symlink():
                target = os.readlink(path).encode()
                entries.append((store.write(b"blob", target), SYMLINK, item.name))
            elif item.is_dir():
                sub = None if item.name in _SKIP_DIRS or path in skip else self._write_folder(path)
                if sub is not None:
                    entries.append((sub, TREE, item.name))
            elif item.is_file() and not item.name.endswith(".pyc"):
                mode = EXECUTABLE if item.stat().st_mode & 0o100 else FILE
                entries.append((store.write(b"blob", path.read_bytes()), mode, item.name))
        return store.write_tree(entries) if entries else None

    def _snapshot(self, tree: bytes) -> Path:
        """Return the cached extraction of ``tree``, making it once."""
        final = self._path / SNAPSHOTS / bin_to_hex(tree).decode()
        if final.is_dir():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=final.parent))
        for path, binsha, mode in self._objects().walk(tree):
            self._materialise(staging, path, binsha, mode)
        try:
            staging.rename(final)
        except OSError:
            shutil.rmtree(staging)  # another process made it first
        return final

    def _materialise(self, root: Path, path: str, binsha: bytes | None, mode: int) -> None:
        """Write (or, with binsha None, remove) one tree entry under ``root``."""
        target = root / path
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
        if binsha is None or mode == SUBMODULE:
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        data = self._objects().read(binsha)[1]
        if mode == SYMLINK:
            os.symlink(data.decode(), target)
            return
        target.write_bytes(data)
        if mode == EXECUTABLE:
            target.chmod(0o755)


def _checked_path(path: str) -> str:
    """Return ``path`` if it is a safe relative posix path, else raise ValueError."""
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..", ".git") for p in parts):
        raise ValueError(f"changes: bad path {path!r}; use a relative posix path")
    return path


def _git(args: list[str], git_dir: Path | None = None, cwd: Path | None = None) -> str:
    """Run one git command and return its stdout; raise ArchiveError on failure."""
    env = {k: v for k, v in os.environ.items() if k not in _GIT_ENV_DROP}
    command = ["git", *([f"--git-dir={git_dir}"] if git_dir else []), *args]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ArchiveError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout
