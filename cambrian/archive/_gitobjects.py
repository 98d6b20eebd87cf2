"""In-process git object access: read, write and walk trees without a subprocess per object."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from io import BytesIO
from pathlib import Path

from gitdb import IStream
from gitdb.db import LooseObjectDB
from gitdb.exc import BadObject
from gitdb.util import bin_to_hex, hex_to_bin

TREE = 0o040000
FILE = 0o100644
EXECUTABLE = 0o100755
SYMLINK = 0o120000
SUBMODULE = 0o160000

#: One tree entry: (binary sha, mode, name).
Entry = tuple[bytes, int, str]

IDENTITY = b"cambrian <cambrian@localhost>"
_CACHE_SIZE = 4096


class ObjectStore:
    """Reads and writes the objects of one git repository.

    Writes go straight into loose objects in-process; reads try the loose objects first and
    fall back to GitPython's persistent ``git cat-file`` process (packed objects). Trees are
    cached by sha since they never change. Thread-safe.
    """

    def __init__(self, git_dir: Path) -> None:
        # Imported here: importing GitPython runs `git version` twice.
        from git import Repo

        self._repo = Repo(git_dir)
        self._loose = LooseObjectDB(str(git_dir / "objects"))
        self._trees: OrderedDict[bytes, list[Entry]] = OrderedDict()
        self._lock = threading.RLock()

    def close(self) -> None:
        """Stop the ``git cat-file`` helper processes."""
        with self._lock:
            self._repo.close()

    def read(self, binsha: bytes) -> tuple[bytes, bytes]:
        """Return ``(type, data)`` of an object."""
        with self._lock:
            try:
                stream = self._loose.stream(binsha)
            except BadObject:
                stream = self._repo.odb.stream(binsha)
            return stream.type, stream.read()

    def tree(self, binsha: bytes) -> list[Entry]:
        """Return the entries of a tree object."""
        with self._lock:
            entries = self._trees.get(binsha)
            if entries is None:
                kind, data = self.read(binsha)
                if kind != b"tree":
                    raise ValueError(f"{bin_to_hex(binsha).decode()} is a {kind.decode()}")
                entries = _parse_tree(data)
                self._trees[binsha] = entries
                if len(self._trees) > _CACHE_SIZE:
                    self._trees.popitem(last=False)
            return entries

    def commit_tree(self, commit: str) -> bytes:
        """Return the binary tree sha of a commit given by hex sha."""
        kind, data = self.read(hex_to_bin(commit))
        if kind != b"commit" or not data.startswith(b"tree "):
            raise ValueError(f"{commit} is not a commit")
        return hex_to_bin(data[5:45])

    def write(self, kind: bytes, data: bytes) -> bytes:
        """Store an object and return its binary sha."""
        with self._lock:
            return self._loose.store(IStream(kind, len(data), BytesIO(data))).binsha

    def write_tree(self, entries: list[Entry]) -> bytes:
        """Store a tree from unsorted entries (git's order: directories sort as ``name/``)."""
        ordered = sorted(entries, key=lambda e: _name(e[2]) + (b"/" if e[1] == TREE else b""))
        data = b"".join(b"%o %s\0%s" % (mode, _name(name), sha) for sha, mode, name in ordered)
        binsha = self.write(b"tree", data)
        with self._lock:
            self._trees[binsha] = ordered
        return binsha

    def write_commit(self, tree: bytes, parents: list[str], message: str) -> str:
        """Store a commit by ``cambrian <cambrian@localhost>`` dated now; return its hex sha."""
        stamp = f" {int(time.time())} +0000".encode()
        lines = [b"tree " + bin_to_hex(tree)]
        lines += [b"parent " + p.encode() for p in parents]
        lines += [b"author " + IDENTITY + stamp, b"committer " + IDENTITY + stamp]
        body = b"\n".join(lines) + b"\n\n" + message.rstrip("\n").encode() + b"\n"
        return bin_to_hex(self.write(b"commit", body)).decode()

    def walk(self, tree: bytes, prefix: str = "") -> Iterator[tuple[str, bytes, int]]:
        """Yield ``(path, binsha, mode)`` of every non-tree entry below ``tree``."""
        for binsha, mode, name in self.tree(tree):
            if mode == TREE:
                yield from self.walk(binsha, f"{prefix}{name}/")
            else:
                yield f"{prefix}{name}", binsha, mode

    def lookup(self, tree: bytes, path: str) -> tuple[bytes, int] | None:
        """Return ``(binsha, mode)`` of ``path`` below ``tree``, or None."""
        head, _, rest = path.partition("/")
        for binsha, mode, name in self.tree(tree):
            if name == head:
                if not rest:
                    return binsha, mode
                return self.lookup(binsha, rest) if mode == TREE else None
        return None

    def changed(
        self, old: bytes | None, new: bytes, prefix: str = ""
    ) -> Iterator[tuple[str, bytes | None, int]]:
        """Yield ``(path, binsha, mode)`` of entries of ``new`` that differ from ``old``.

        Paths only in ``old`` are yielded with binsha None. Equal subtrees are skipped whole.
        """
        before = {name: (sha, mode) for sha, mode, name in self.tree(old)} if old else {}
        for binsha, mode, name in self.tree(new):
            was = before.pop(name, None)
            if was == (binsha, mode):
                continue
            if mode == TREE:
                old_sub = was[0] if was is not None and was[1] == TREE else None
                if was is not None and old_sub is None:
                    yield f"{prefix}{name}", None, was[1]
                yield from self.changed(old_sub, binsha, f"{prefix}{name}/")
            else:
                if was is not None and was[1] == TREE:
                    yield f"{prefix}{name}", None, TREE
                yield f"{prefix}{name}", binsha, mode
        for name, (_, mode) in before.items():
            yield f"{prefix}{name}", None, mode

    def apply(self, tree: bytes | None, changes: Mapping[str, bytes]) -> bytes:
        """Return the sha of ``tree`` with files replaced or added (relative path -> bytes).

        Existing files keep their mode (an executable stays executable); new ones are 100644.
        """
        entries = {name: (sha, mode) for sha, mode, name in self.tree(tree)} if tree else {}
        nested: dict[str, dict[str, bytes]] = {}
        for path, data in changes.items():
            head, _, rest = path.partition("/")
            if rest:
                nested.setdefault(head, {})[rest] = data
                continue
            old = entries.get(head)
            mode = old[1] if old is not None and old[1] in (FILE, EXECUTABLE) else FILE
            entries[head] = (self.write(b"blob", data), mode)
        for head, sub in nested.items():
            old = entries.get(head)
            base = old[0] if old is not None and old[1] == TREE else None
            entries[head] = (self.apply(base, sub), TREE)
        return self.write_tree([(sha, mode, name) for name, (sha, mode) in entries.items()])


def _name(name: str) -> bytes:
    """Encode a tree entry name as git stores it (bytes that are not UTF-8 round-trip)."""
    return name.encode("utf-8", "surrogateescape")


def _parse_tree(data: bytes) -> list[Entry]:
    """Parse a raw tree object into entries."""
    entries: list[Entry] = []
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        nul = data.index(b"\0", space)
        name = data[space + 1 : nul].decode("utf-8", "surrogateescape")
        entries.append((data[nul + 1 : nul + 21], int(data[pos:space], 8), name))
        pos = nul + 21
    return entries
