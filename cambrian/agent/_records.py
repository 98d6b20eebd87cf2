"""Read-only access to a run's archive and lineage, for status, best and show."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cambrian.agent._run_files import read_run_files
from cambrian.agent._setup import archive_url, resolve_run_dir
from cambrian.archive import GitLineage, SqlArchive
from cambrian.config import build_config


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
    meta, data = read_run_files(run_dir)
    config = build_config(data, str(run_dir))
    archive = SqlArchive(
        config.archive,
        url=archive_url(config, run_dir),
        run_id=meta["run_id"],
        maximize=config.evaluator.direction == "maximize",
    )
    archive.open()
    return RunRecords(run_dir, meta, archive, GitLineage(run_dir / "lineage.git"))
