"""Replies that give a changed statement or two of a function, not the whole function.

Small models often answer with the one line they changed (``r = [...]``, ``return ...``)
or with a function's body torn out of its ``def``. Merged by name at module level such
a line would define a new global and change nothing that runs (or fail to import). Here
each statement of the reply is matched, by what it sets or does, to the one statement of
the region's functions it replaces, and put there at that statement's indentation.
Pure functions, no I/O.
"""

from __future__ import annotations

import ast
import textwrap
from collections import defaultdict
from collections.abc import Iterator
from difflib import SequenceMatcher

from cambrian.agent._parse import parse
from cambrian.agent._regions import is_text, source_lines, syntax_error

Key = tuple[str, str]
_BODIES = ("body", "orelse", "finalbody")


def key(node: ast.stmt) -> Key | None:
    """What a statement is matched by: the names it assigns, ``return``, a loop target."""
    if isinstance(node, ast.Assign):
        return ("=", ",".join(ast.unparse(t) for t in node.targets))
    if isinstance(node, ast.AugAssign | ast.AnnAssign):
        return ("=", ast.unparse(node.target))
    if isinstance(node, ast.Return):
        return ("return", "")
    if isinstance(node, ast.For | ast.AsyncFor):
        return ("for", ast.unparse(node.target))
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        return ("call", ast.unparse(node.value.func))
    return None


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement of ``body``, nested blocks included (not nested functions)."""
    for node in body:
        yield node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        for field in _BODIES:
            yield from _statements(getattr(node, field, []) or [])
        for handler in getattr(node, "handlers", []) or []:
            yield from _statements(handler.body)


def _index(function: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[Key, list[ast.stmt]]:
    """The function's statements by key."""
    found: dict[Key, list[ast.stmt]] = defaultdict(list)
    for node in _statements(function.body):
        k = key(node)
        if k is not None:
            found[k].append(node)
    return found


def into_statements(region: str, code: str) -> str | None:
    """``region`` with the statements of ``code`` in place of their matches in one function.

    Every statement of ``code`` must match exactly one statement of the same top-level
    function (or method) of ``region`` by :func:`key`, none may match a top-level
    statement (those are merged by name elsewhere), and the result must parse. Where
    several functions could take them, the one whose statements look most like the
    reply's wins; a tie places nothing.

    Returns:
        The new region, or None when ``code`` is not such a set of statements.
    """
    try:
        tree, old = parse(code), parse(region)
    except (SyntaxError, ValueError):
        return None
    reply = [node for node in tree.body if not is_text(node)]
    keys = [key(node) for node in reply]
    top = {key(node) for node in old.body}
    if not reply or None in keys or len(set(keys)) != len(keys) or top & set(keys):
        return None
    matches = []
    for function in _functions(old):
        index = _index(function)
        if all(len(index.get(k, ())) == 1 for k in keys):  # type: ignore[arg-type]
            targets = [index[k][0] for k in keys]  # type: ignore[index]
            likeness = sum(map(_likeness, targets, reply))
            matches.append((likeness, list(zip(targets, reply, strict=True))))
    matches.sort(key=lambda match: match[0], reverse=True)
    if not matches or (len(matches) > 1 and matches[0][0] == matches[1][0]):
        return None  # no function has them all, or two fit equally well
    return _replace(region, code, matches[0][1])


def _likeness(old: ast.stmt, new: ast.stmt) -> float:
    """How alike two statements' code is, 0 to 1 (where several functions could take it)."""
    return SequenceMatcher(None, ast.unparse(old), ast.unparse(new)).ratio()


def _functions(tree: ast.Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Top-level functions and the methods of top-level classes."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node
        elif isinstance(node, ast.ClassDef):
            yield from (
                n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            )


def _replace(region: str, code: str, pairs: list[tuple[ast.stmt, ast.stmt]]) -> str | None:
    """``region`` with each target statement's lines replaced by its reply statement."""
    lines, new_lines = source_lines(region), source_lines(code)
    for target, new in sorted(pairs, key=lambda pair: pair[0].lineno, reverse=True):
        text = textwrap.dedent("".join(new_lines[new.lineno - 1 : new.end_lineno]))
        text = textwrap.indent(text.rstrip("\n") + "\n", " " * target.col_offset)
        lines[target.lineno - 1 : target.end_lineno] = [text]
    merged = "".join(lines)
    return merged if not syntax_error(merged) else None
