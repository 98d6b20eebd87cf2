"""Whether an edit changes what a Python file does, not only how it reads.

Small models often answer with the same code under a new docstring, or add a helper
that nothing calls. Such an edit would cost an evaluation and score exactly like its
parent, so it is refused as unchanged before it runs.
"""

from __future__ import annotations

import ast

from cambrian.agent._parse import parse

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def same_behaviour(old: str, new: str, *, unused: bool = True) -> bool:
    """Whether ``new`` differs from ``old`` only in comments, docstrings or layout.

    With ``unused``, new top-level definitions, assignments and imports that nothing in
    ``new`` refers to are ignored too. Leave it off when the program failed: a repair
    may add a function the evaluator calls by name. Either text failing to parse counts
    as a real change.
    """
    try:
        old_tree, new_tree = parse(old), parse(new)
    except (SyntaxError, ValueError):
        return False
    if unused:
        before = {name for node in old_tree.body for name in _defined(node)}
        used = _referenced(new_tree) | before
        new_tree.body = [
            node for node in new_tree.body if not (_defined(node) and not (_defined(node) & used))
        ]
    return _shape(old_tree) == _shape(new_tree)


def _defined(node: ast.stmt) -> set[str]:
    """Names a top-level definition, assignment or import binds (empty for others)."""
    if isinstance(node, _DEFS):
        return {node.name}
    if isinstance(node, ast.Assign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {t.id for t in targets if isinstance(t, ast.Name)}
    if isinstance(node, ast.Import | ast.ImportFrom):
        return {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return set()


def _referenced(tree: ast.Module) -> set[str]:
    """Names the code loads or reads as attributes anywhere."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
    return names


def _shape(tree: ast.Module) -> str:
    """The tree without docstrings, as text."""
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, *_DEFS)) and body and _is_docstring(body[0]):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


def _is_docstring(node: ast.stmt) -> bool:
    """Whether a statement is a bare string literal."""
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )
