"""Read-only access to a run's archive and lineage, for status, best and show."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cambrian.agent._setup import CONFIG_JSON, RUN_FILE, archive_url, resolve_run_dir
from cambrian.archive import GitLineage, SqlArchive
from cambrian.config import build_config
from cambrian.errors import ConfigError


@dataclass
class RunRecords:
    """An opened run folder; use as a context manager so the database is closed."""

    run_dir: Path
    meta: dict
    archive: SqlArchive
    lineage: GitLineage

    def __enter__(self) -> RunRecords:
        return self

    def __exit__(self, *exc: object) -> None:
        self.archive.close()
        self.lineage.close()


def open_records(run_dir: Path | None) -> RunRecords:
    """Open the run in ``run_dir`` (default: the latest run started here) for reading."""
    run_dir = resolve_run_dir(run_dir)
    if not (run_dir / RUN_FILE).is_file():
        raise ConfigError(f"{run_dir} is not a cambrian run folder (no {RUN_FILE})")
    meta = json.loads((run_dir / RUN_FILE).read_text())
    config = build_config(json.loads((run_dir / CONFIG_JSON).read_text()), str(run_dir))
    archive = SqlArchive(
        config.archive,
        url=archive_url(config, run_dir),
        run_id=meta["run_id"],
        maximize=config.evaluator.direction == "maximize",
    )
    archive.open()
    return RunRecords(run_dir, meta, archive, GitLineage(run_dir / "lineage.git"))
