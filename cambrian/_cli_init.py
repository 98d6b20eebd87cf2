"""``cambrian init --from DIR``: write down the config of an OpenEvolve or ShinkaEvolve task."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer
from rich.console import Console

from cambrian.config import CONFIG_FILE, build_config, dump_toml, find_config_file
from cambrian.errors import ConfigError
from cambrian.evaluators.compat import detect_task

_SKIP = shutil.ignore_patterns(".cambrian", ".git", "__pycache__", "*.pyc")


def _target(source: Path, directory: Path | None) -> Path:
    """The folder that receives cambrian.toml: the source, or a fresh copy of it."""
    if directory is None or directory.resolve() == source.resolve():
        return source
    if directory.exists() and any(directory.iterdir()):
        raise ConfigError(f"{directory} is not empty: choose a new folder for the copy")
    shutil.copytree(source, directory, ignore=_SKIP, dirs_exist_ok=True)
    return directory


def write_foreign_config(source: Path, directory: Path | None, out: Console) -> Path:
    """Write the cambrian.toml equivalent to a foreign task's own setup.

    The written file reproduces the run that ``cambrian run SOURCE`` does without it.

    Args:
        source: The OpenEvolve or ShinkaEvolve task folder.
        directory: Where to write; None (or ``source``) writes into ``source``, any other
            folder receives a copy of the task first.
        out: Where the warnings and the result are printed.

    Returns:
        The path of the written cambrian.toml.

    Raises:
        ConfigError: ``source`` is not a foreign task or already has a cambrian config.
    """
    if not source.is_dir():
        raise ConfigError(f"--from {source}: no such folder")
    existing = find_config_file(source)
    if existing is not None:
        raise ConfigError(f"{existing} exists already: the task has a cambrian config")
    found = detect_task(source)
    if found is None:
        raise ConfigError(
            f"{source} is not an OpenEvolve task (initial_program.* and evaluator.py) nor a "
            "ShinkaEvolve one (initial.* and evaluate.py taking --results_dir)"
        )
    config = build_config(found.config, f"{source} ({found.format} task)")
    target = _target(source, directory) / CONFIG_FILE
    target.write_text(dump_toml(config))
    for line in found.warnings():
        out.print(f"warning: {line}", markup=False)
    out.print(f"wrote {target} ({found.format} task); run it with: cambrian run {target.parent}")
    return target


def init_from(source: Path, directory: Path | None, out: Console, err: Console) -> None:
    """CLI body of ``cambrian init --from``: one-line error and exit 2 on bad input."""
    try:
        write_foreign_config(source, directory, out)
    except ConfigError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
