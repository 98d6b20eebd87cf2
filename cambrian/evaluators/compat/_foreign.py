"""What detection found: a foreign task's format, equivalent config and warnings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cambrian.errors import ConfigError
from cambrian.evaluators.compat._evaluator import RUNNER_FILE


@dataclass(frozen=True)
class ForeignTask:
    """A task folder written for another evolution framework.

    Attributes:
        format: ``openevolve`` or ``shinka``.
        config: The equivalent raw cambrian config (nested dict, before validation).
        ignored: Foreign config keys that have no meaning in cambrian, by dotted name.
        notes: Other things the user should know (dependencies, assumed bounds).
    """

    format: str
    config: dict[str, Any]
    ignored: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def warnings(self) -> list[str]:
        """One line per warning: the ignored keys (together, by name), then the notes."""
        lines = []
        if self.ignored:
            lines.append(
                f"{self.format} config keys with no meaning in cambrian (ignored): "
                + ", ".join(self.ignored)
            )
        return lines + list(self.notes)


def find_initial(task_dir: Path, stem: str) -> str | None:
    """The task's one ``<stem>.<ext>`` file name, or None when there is none.

    Raises:
        ConfigError: Several files match, so the editable program is ambiguous.
    """
    found = sorted(
        p.name
        for p in task_dir.glob(f"{stem}.*")
        if p.is_file() and p.suffix not in (".pyc", ".orig", ".bak")
    )
    if len(found) > 1:
        raise ConfigError(
            f"{task_dir}: several initial programs ({', '.join(found)}); keep one, or write "
            "a cambrian.toml naming task.editable"
        )
    return found[0] if found else None


def runner_command(*args: str) -> str:
    """The ``evaluator.command`` that calls the runner copied into the work dir."""
    return " ".join(["python", RUNNER_FILE, *args])


def requirements_note(task_dir: Path) -> tuple[str, ...]:
    """A note on where a ``requirements.txt`` belongs, when the task has one."""
    if not (task_dir / "requirements.txt").is_file():
        return ()
    path = task_dir / "requirements.txt"
    return (
        f"{path} lists the task's dependencies; install them into the sandbox, never into "
        f"cambrian's environment: `cambrian sandbox build-image --requirements {path}` for "
        "the docker sandbox; for the process sandbox see the README (compat section)",
    )
