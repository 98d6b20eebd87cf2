"""Which files of the task the LLM may change, and which the evaluator owns."""

from __future__ import annotations

import os
import re
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from functools import lru_cache

_LANGS = {
    ".py": "python",
    ".js": "javascript",
    ".ts": "typescript",
    ".c": "c",
    ".cpp": "cpp",
    ".h": "c",
    ".rs": "rust",
    ".go": "go",
    ".java": "java",
    ".jl": "julia",
    ".sh": "bash",
    ".cu": "cuda",
    ".md": "markdown",
    ".toml": "toml",
    ".json": "json",
}


# Suffixes Python imports a module from (extension modules carry a tag before ".so").
_MODULE_SUFFIXES = (".py", ".pyc", ".pyw", ".so", ".pyd")


@lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Translate a path glob (``*``, ``?``, ``**``) into a regex over posix paths."""
    out, i = [], 0
    pattern = pattern.strip().removeprefix("./")
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def matches(path: str, globs: Iterable[str]) -> bool:
    """Whether the posix ``path`` matches any of ``globs``."""
    return any(_glob_regex(g).match(path) for g in globs)


def language(path: str) -> str:
    """Fence language for a file path ("" when unknown)."""
    dot = path.rfind(".")
    return _LANGS.get(path[dot:].lower(), "") if dot >= 0 else ""


def safe_path(path: str) -> bool:
    """A plain relative posix path: no empty, '.', '..' or '.git' part, not absolute."""
    parts = path.split("/")
    return (
        bool(path)
        and not path.startswith("/")
        and "\\" not in path
        and all(part not in ("", ".", "..", ".git") for part in parts)
    )


def module_name(path: str) -> str:
    """The module ``path`` defines when its folder is on ``sys.path`` ("" for none).

    ``json.py`` and ``json.cpython-311-x86_64-linux-gnu.so`` define ``json``; so does
    ``json/__init__.py`` (a package comes before a module of its name in the same folder).
    """
    parts = path.split("/")
    name = parts[-1]
    if not name.endswith(_MODULE_SUFFIXES):
        return ""
    stem = name.split(".", 1)[0]
    return parts[-2] if stem == "__init__" and len(parts) > 1 else stem


@lru_cache(maxsize=1)
def installed_modules() -> frozenset[str]:
    """Top-level modules and packages installed beside this interpreter (site-packages).

    The sandbox runs the evaluator with this interpreter (or an image built from it),
    so these are the third-party names an evaluator may import (``numpy``, ``scipy``).
    Namespace packages (folders without ``__init__``) are left out.
    """
    paths = sysconfig.get_paths()
    stdlib = {os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib") if paths.get(k)}
    names: set[str] = set()
    for folder in sys.path:
        if not folder or not os.path.isdir(folder) or os.path.realpath(folder) in stdlib:
            continue
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.endswith(_MODULE_SUFFIXES):
                names.add(module_name(entry.name))
            elif entry.is_dir() and os.path.exists(os.path.join(entry.path, "__init__.py")):
                names.add(entry.name)
    return frozenset(names - {""})


class FileRules:
    """Editable and protected files of a task.

    Args:
        editable: Globs of files the LLM may change.
        protected: Extra globs the evaluator owns; every non-editable file is protected too.
        files: The task's files; no edit may turn one of them into a folder (which could
            shadow a protected file, e.g. ``evaluate.py/__main__.py``).
    """

    def __init__(
        self, editable: Sequence[str], protected: Sequence[str] = (), files: Iterable[str] = ()
    ) -> None:
        if not editable:
            raise ValueError("editable must name at least one glob")
        self._editable = tuple(editable)
        self._protected = tuple(protected)
        self._files = frozenset(files)
        guarded = (module_name(p) for p in self._files if not self.is_editable(p))
        self._guarded = frozenset(guarded) - {""}

    def is_editable(self, path: str) -> bool:
        """Whether the LLM may change ``path``."""
        if not safe_path(path) or self._shadows_a_file(path):
            return False
        return matches(path, self._editable) and not matches(path, self._protected)

    def _shadows_a_file(self, path: str) -> bool:
        """Whether a parent folder of ``path`` is one of the task's files."""
        parts = path.split("/")
        return any("/".join(parts[:i]) in self._files for i in range(1, len(parts)))

    def shadowing(self, paths: Iterable[str]) -> str:
        """Why one of ``paths``, if created, would shadow a module the evaluator may import.

        The evaluator's folder comes first on its ``sys.path``, so a new ``json.py``
        there would be imported in place of the standard library's, a new ``numpy.py``
        in place of the installed package, and a new ``helpers/__init__.py`` in place
        of the task's protected ``helpers.py``. Files of the task itself are left alone.

        Returns:
            A one-line reason naming the first such path, or "" when none shadows.
        """
        for path in sorted(set(paths) - self._files):
            name = module_name(path)
            if name in sys.stdlib_module_names:
                whose = "the standard-library module"
            elif name in self._guarded:
                whose = "the evaluator's module"
            elif name in installed_modules():
                whose = "the installed module"
            else:
                continue
            return f"new file {path} would shadow {whose} '{name}'; give it another name"
        return ""

    def editable_files(self, paths: Iterable[str]) -> list[str]:
        """The editable ones among ``paths``, sorted."""
        return sorted(p for p in paths if self.is_editable(p))

    def protected_files(self, paths: Iterable[str]) -> list[str]:
        """Files among ``paths`` that candidates must not modify, sorted."""
        return sorted(p for p in paths if not self.is_editable(p))
