"""EVOLVE-BLOCK regions and top-level definitions, for replies that give part of a file.

Small models rarely copy a whole file faithfully: they answer with the block's new code
only, or with the one function they changed. These pure functions put such an answer
back where it belongs: a region is spliced between its markers, and definitions replace
the same-named ones (new names are added, untouched ones kept).
"""

from __future__ import annotations

import ast
import io
import textwrap

from cambrian.agent._edit_parts import END, START
from cambrian.agent._parse import parse

_NAMED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def block_span(text: str) -> tuple[int, int] | None:
    """Line indexes ``(first, end)`` of the content of a file's only EVOLVE-BLOCK.

    The content is ``lines[first:end]``, between the marker lines. None when the file
    has no block, several, or markers out of order.
    """
    lines = source_lines(text)
    starts = [i for i, line in enumerate(lines) if START in line]
    ends = [i for i, line in enumerate(lines) if END in line]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        return None
    return starts[0] + 1, ends[0]


def region_text(text: str) -> str:
    """The content of the file's only EVOLVE-BLOCK ("" when it has none)."""
    span = block_span(text)
    if span is None:
        return ""
    lines = source_lines(text)
    return "".join(lines[span[0] : span[1]])


def inner_code(reply_code: str) -> str:
    """A reply's code without what lies outside its own markers, if it repeats them.

    With both markers, the text between them; with only an END marker, the text
    before it; with only a START marker, the text after it (what lies on the far side
    of a marker is the file outside the block, which must not be merged in).
    """
    span = block_span(reply_code)
    if span is not None:
        return region_text(reply_code)
    lines = source_lines(reply_code)
    ends = [i for i, line in enumerate(lines) if END in line]
    starts = [i for i, line in enumerate(lines) if START in line]
    if ends and not starts:
        lines = lines[: ends[0]]
    elif starts and not ends:
        lines = lines[starts[-1] + 1 :]
    return "".join(line for line in lines if START not in line and END not in line)


def source_lines(text: str) -> list[str]:
    """The lines of ``text`` with their endings, split at newlines only.

    ``str.splitlines`` also splits at form feeds and other separators that Python's
    parser keeps inside a line, which would shift the line numbers ``ast`` reports.
    """
    return io.StringIO(text, newline="").readlines()


def splice(text: str, region: str) -> str:
    """``text`` with its only EVOLVE-BLOCK's content replaced by ``region``."""
    span = block_span(text)
    if span is None:
        raise ValueError("text must have exactly one EVOLVE-BLOCK-START/END pair")
    lines = source_lines(text)
    body = region if not region or region.endswith("\n") else region + "\n"
    return "".join(lines[: span[0]]) + body + "".join(lines[span[1] :])


def syntax_error(code: str) -> str:
    """Why ``code`` does not parse, as "does not parse (...)" ("" when it parses)."""
    try:
        parse(code)
    except SyntaxError as exc:
        return f"does not parse (line {exc.lineno}: {exc.msg})"
    except ValueError as exc:  # null bytes
        return f"does not parse ({exc})"
    return ""


def loose_statements(code: str, region: str) -> str:
    """Why ``code`` cannot replace definitions of ``region`` ("" when it can).

    A reply of bare statements (``for`` loops, ``return``) is a function's body torn out
    of its ``def``: merged by name it would change nothing that runs. A region that has
    such statements itself is replaced whole instead, so it is not refused.
    """
    try:
        new, old = parse(code), parse(region)
    except (SyntaxError, ValueError):
        return ""
    if any(not _names(node) and not is_text(node) for node in old.body):
        return ""
    loose = [node for node in new.body if not _names(node) and not is_text(node)]
    if not loose or any(isinstance(node, _NAMED) for node in new.body):
        return ""
    first = loose[0]
    return (
        f"has statements outside any function (line {first.lineno}): give each "
        "changed function whole, with its def line"
    )


def into_only_function(region: str, body: str) -> str | None:
    """``body`` put under the ``def`` line of the region's only function, else None.

    Small models often answer with a function's new body and no ``def`` line. When the
    region defines exactly one function (and nothing else that runs), that is the only
    place the body can go.
    """
    try:
        tree = parse(region)
    except (SyntaxError, ValueError):
        return None
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    others = [n for n in tree.body if n not in functions and not is_text(n)]
    if len(functions) != 1 or others:
        return None
    function = functions[0]
    lines = source_lines(region)
    header = "".join(lines[_start(function) : function.body[0].lineno - 1])
    code = textwrap.indent(textwrap.dedent(body).strip("\n") + "\n", "    ")
    wrapped = header + code
    return wrapped if not syntax_error(wrapped) else None


def is_text(node: ast.stmt) -> bool:
    """Whether a statement is a bare literal (a docstring or a stray string)."""
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)


def defined_names(code: str) -> set[str] | None:
    """Top-level functions, classes and assigned names of ``code`` (None: no parse)."""
    try:
        tree = parse(code)
    except (SyntaxError, ValueError):
        return None
    return {name for node in tree.body for name in _names(node)}


def merge_definitions(old: str, new: str) -> str | None:
    """``old`` with the top-level definitions of ``new`` in place of their namesakes.

    Functions, classes and assignments of ``new`` replace the same-named ones of
    ``old``; new names are added after ``old``'s last definition, new imports at the
    top. Other statements of ``new`` (calls, ``if __name__`` blocks) are dropped.

    Returns:
        The merged code, or None when either text does not parse as Python or ``new``
        defines nothing.
    """
    try:
        old_tree, new_tree = parse(old), parse(new)
    except (SyntaxError, ValueError):
        return None
    new_lines = source_lines(new)
    pieces = [(node, _segment(new_lines, node)) for node in new_tree.body if _names(node)]
    if not pieces:
        return None
    by_name = {name: node for node in old_tree.body for name in _names(node)}
    added, imports, replaced = [], [], {}
    for node, text in pieces:
        target = next((by_name[n] for n in _names(node) if n in by_name), None)
        if target is not None:
            replaced[id(target)] = text
        elif isinstance(node, ast.Import | ast.ImportFrom):
            imports.append(text)
        else:
            added.append(text)
    return "".join(imports) + _rebuild(old, old_tree, replaced, added)


def _rebuild(old: str, tree: ast.Module, replaced: dict[int, str], added: list[str]) -> str:
    """``old`` with replaced statements swapped in and ``added`` after the last one."""
    lines = source_lines(old)
    out: list[str] = []
    pos = 0
    for index, node in enumerate(tree.body):
        start, end = _start(node), node.end_lineno or 0
        if id(node) in replaced:
            out += [*lines[pos:start], replaced[id(node)]]
            pos = end
        if index == len(tree.body) - 1:
            out += [*lines[pos:end]] if pos < end else []
            pos = max(pos, end)
            out += ["\n\n" + text for text in added]
    if not tree.body:
        out += added
    return "".join(out + lines[pos:])


def _names(node: ast.stmt) -> tuple[str, ...]:
    """The names a top-level statement defines (imports keyed by their source)."""
    if isinstance(node, _NAMED):
        return (node.name,)
    if isinstance(node, ast.Assign):
        return tuple(t.id for t in node.targets if isinstance(t, ast.Name))
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return (node.target.id,)
    if isinstance(node, ast.Import | ast.ImportFrom):
        return ("import " + ast.unparse(node),)
    return ()


def _start(node: ast.stmt) -> int:
    """Index of the first line of ``node``, decorators included."""
    decorators = getattr(node, "decorator_list", [])
    return min([node.lineno, *(d.lineno for d in decorators)]) - 1


def _segment(lines: list[str], node: ast.stmt) -> str:
    """The source lines of ``node``, ending with a newline."""
    text = "".join(lines[_start(node) : node.end_lineno])
    return text if text.endswith("\n") else text + "\n"
