"""``detect_task``: recognise a task folder written for another framework."""

from __future__ import annotations

from pathlib import Path

from cambrian.evaluators.compat import _openevolve, _shinka
from cambrian.evaluators.compat._foreign import ForeignTask

FORMATS = {"openevolve": _openevolve.detect, "shinka": _shinka.detect}


def detect_task(task_dir: Path) -> ForeignTask | None:
    """Recognise an OpenEvolve or ShinkaEvolve task folder.

    Nothing of the task is imported or run: detection reads file names and text only.

    Args:
        task_dir: A folder with no cambrian.toml.

    Returns:
        The format, the equivalent raw cambrian config and the warnings, or None when
        the folder is in neither format.

    Raises:
        ConfigError: The folder is in a known format but cannot be mapped (bad YAML,
            several initial programs).
    """
    for detect in FORMATS.values():
        found = detect(Path(task_dir))
        if found is not None:
            return found
    return None
