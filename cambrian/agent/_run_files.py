"""The run folder's two JSON files: ``run.json`` (identity) and ``config.json`` (settings).

Both are written atomically (a temporary file renamed over the old one), so a worker
killed mid-write leaves the previous version, never an empty or half-written file.
``config.json`` is written first: ``run.json`` is what marks a folder as a run.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from cambrian.errors import ConfigError

RUN_FILE = "run.json"
CONFIG_JSON = "config.json"
STALE_TEMP_S = 600  # a temporary file this old belongs to a writer that was killed


def is_run_folder(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run (its ``run.json`` exists)."""
    return (run_dir / RUN_FILE).is_file()


def write_run_files(run_dir: Path, meta: dict[str, Any], config: dict[str, Any]) -> None:
    """Write ``config.json`` then ``run.json`` into ``run_dir``, each atomically."""
    run_dir.mkdir(parents=True, exist_ok=True)
    _drop_stale_temps(run_dir)
    _write_json(run_dir / CONFIG_JSON, config)
    _write_json(run_dir / RUN_FILE, meta)


def read_run_files(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return ``(meta, config)`` of the run in ``run_dir``.

    Raises:
        ConfigError: ``run_dir`` is not a run folder, or one of its files is unreadable.
    """
    if not is_run_folder(run_dir):
        raise ConfigError(f"{run_dir} is not a cambrian run folder (no {RUN_FILE})")
    meta = _read_json(run_dir / RUN_FILE)
    if not isinstance(meta.get("run_id"), str):
        raise ConfigError(f"{run_dir / RUN_FILE} has no run_id: restore it from a backup")
    return meta, _read_json(run_dir / CONFIG_JSON)


def _read_json(path: Path) -> dict[str, Any]:
    """One JSON object from ``path``, or a one-line ``ConfigError`` naming the file."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing: this run folder is incomplete") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"{path} is not readable JSON ({exc}): restore it from a backup"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} does not hold a JSON object: restore it from a backup")
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` by ``data`` as JSON, atomically and durably."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(data, indent=1))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    finally:
        Path(temp).unlink(missing_ok=True)


def _drop_stale_temps(run_dir: Path) -> None:
    """Remove temporary files that killed writers left (never a live writer's)."""
    cutoff = time.time() - STALE_TEMP_S
    for name in (RUN_FILE, CONFIG_JSON):
        for temp in run_dir.glob(f".{name}.*.tmp"):
            try:
                if temp.lstat().st_mtime < cutoff:
                    temp.unlink()
            except FileNotFoundError:  # another worker removed it first
                pass
