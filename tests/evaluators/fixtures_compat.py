"""Helpers for the compat tests: copies of the foreign-format task folders."""

from __future__ import annotations

import shutil
from pathlib import Path

COMPAT_TASKS = Path(__file__).resolve().parent / "compat_tasks"


def copy_task(name: str, dest: Path) -> Path:
    """A plain-folder copy of ``compat_tasks/<name>`` at ``dest`` (never the repo's git)."""
    shutil.copytree(COMPAT_TASKS / name, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest
