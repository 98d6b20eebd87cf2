"""``ast.parse``, one thread at a time.

CPython 3.11 keeps the AST validator's recursion depth in interpreter-wide state, so
two threads parsing at once (proposals are checked in worker threads) can fail with
"SystemError: AST constructor recursion depth mismatch". Every parse in the agent goes
through this lock; parsing a candidate file takes well under a millisecond.
"""

from __future__ import annotations

import ast
import threading

_LOCK = threading.Lock()


def parse(source: str) -> ast.Module:
    """``ast.parse(source)``; raises ``SyntaxError`` (or ``ValueError``) as it does."""
    with _LOCK:
        return ast.parse(source)
