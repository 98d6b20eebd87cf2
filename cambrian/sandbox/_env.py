"""The scrubbed environment every sandbox backend hands to candidate code.

Nothing is copied from the host environment: API keys and credentials must never reach
candidate code. Only a fixed allowlist is built from scratch, plus what the caller passes.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping

TOKEN_VAR = "CAMBRIAN_SANDBOX_TOKEN"
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


def new_token() -> str:
    """Return a fresh random marker that tags every process of one run."""
    return secrets.token_hex(16)


def interpreter_bin() -> str:
    """Return the directory of the running Python interpreter (first on the sandbox PATH)."""
    return os.path.dirname(sys.executable) or "/usr/bin"


#: Where Python looks for bytecode instead of ``__pycache__``: under /proc, where nothing
#: can be created, so no cached bytecode is ever read.
NO_BYTECODE = "/proc/cambrian-no-bytecode"


def sandbox_env(
    *,
    home: str,
    tmpdir: str,
    token: str,
    extra: Mapping[str, str] | None = None,
    bin_dir: str | None = None,
    pycache: str | None = None,
) -> dict[str, str]:
    """Build the environment of one sandboxed command.

    Args:
        home: Value of ``HOME`` (the work dir as the command sees it).
        tmpdir: Value of ``TMPDIR``.
        token: This run's marker, set as ``CAMBRIAN_SANDBOX_TOKEN`` (cannot be overridden).
        extra: Variables added on top of the allowlist (they may override it).
        bin_dir: Directory put first on ``PATH``; default: the running interpreter's.
        pycache: A bytecode cache folder only the evaluator can reach, where it may
            write; default: none (no ``.pyc`` is read or written).

    Returns:
        A new dict; the host's ``os.environ`` is never read.

    Raises:
        ValueError: ``extra`` holds a name or value that is not a valid environment entry.
    """
    env = {
        "PATH": f"{bin_dir or interpreter_bin()}:{SYSTEM_PATH}",
        "HOME": home,
        "TMPDIR": tmpdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        # HOME is the work dir, which candidate code may write: the evaluator's Python
        # must neither run a ``.pth`` from a user site there nor read a forged ``.pyc``.
        "PYTHONNOUSERSITE": "1",
        "PYTHONPYCACHEPREFIX": pycache or NO_BYTECODE,
    }
    if pycache:  # a cache only the evaluator can write: its imports compile once
        del env["PYTHONDONTWRITEBYTECODE"]
    for name, value in (extra or {}).items():
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise ValueError(f"env: invalid variable name {name!r}")
        if not isinstance(value, str) or "\0" in value:
            raise ValueError(f"env: value of {name} must be a str without NUL bytes")
        env[name] = value
    env[TOKEN_VAR] = token
    return env
