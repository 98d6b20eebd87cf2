"""``ArchiveViews``: read-only queries for the live view (tree rows, cells, time series, runs).

Never migrates and never writes: the UI process may read a database that a run is writing
(SQLite WAL lets readers and one writer work at the same time).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, func, inspect, select

from cambrian.archive._ledger import META_NOTES, REPLIES
from cambrian.archive._migrate import READONLY, make_engine
from cambrian.archive._queries import CELLS, EVALUATIONS, LLM_CALLS, PROGRAMS, RUNS, counts

#: Columns of each row returned by ``ArchiveViews.tree`` (sent to the browser as arrays).
TREE_COLUMNS = (
    "id",
    "seq",
    "parent_id",
    "island",
    "generation",
    "model",
    "status",
    "score",
    "updated_at",
)
_FAINT = ("failed", "rejected")
#: Most characters of a kept LLM reply sent with a program (the run caps what it keeps too).
REPLY_CHARS = 20_000


class ArchiveViews:
    """Read-only views of every run in one archive database.

    Construction touches nothing; the engine is created on first use.

    Args:
        url: SQLAlchemy URL of the archive, e.g. ``sqlite:///run/archive.db``.
    """

    def __init__(self, url: str) -> None:
        if not url:
            raise ValueError("url: must not be empty")
        self._url = url
        self._lock = threading.Lock()
        self._engine: Engine | None = None

    def close(self) -> None:
        """Release the engine's connections (reopened lazily)."""
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
            self._engine = None

    def ready(self) -> bool:
        """Return whether the archive's tables exist yet (a run may still be starting)."""
        with self._conn() as conn:
            return inspect(conn).has_table(PROGRAMS.name)

    def runs(self) -> list[dict[str, Any]]:
        """Return every run, newest first: id, times, meta, program count."""
        if not self.ready():
            return []
        count = (
            select(func.count()).where(PROGRAMS.c.run_id == RUNS.c.id).scalar_subquery().label("n")
        )
        columns = (RUNS.c.id, RUNS.c.created_at, RUNS.c.updated_at, RUNS.c.meta)
        query = select(*columns, count).order_by(RUNS.c.created_at.desc())
        with self._conn() as conn:
            rows = conn.execute(query).all()
        return [
            {
                "id": row.id,
                "created_at": row.created_at,
                "updated_at": row.updated_at,
                "meta": json.loads(row.meta or "{}"),
                "programs": row.n,
            }
            for row in rows
        ]

    def version(self, run_id: str) -> float:
        """Return the run's ``updated_at`` (changes whenever the run writes), 0 if missing."""
        with self._conn() as conn:
            found = conn.execute(select(RUNS.c.updated_at).where(RUNS.c.id == run_id)).scalar()
        return float(found or 0.0)

    def tree(self, run_id: str, since: float = 0.0, limit: int = 0) -> dict[str, Any]:
        """Return the run's programs as compact rows (columns ``TREE_COLUMNS``), in seq order.

        Args:
            run_id: The run.
            since: Only programs updated at or after this time (a delta for polling).
            limit: Most failed or rejected programs to send (0: all); the oldest are culled
                first, since they are drawn faintly and no program descends from them.

        Returns:
            ``{"columns", "rows", "culled", "max_updated"}``.
        """
        query = (
            select(*(PROGRAMS.c[name] for name in TREE_COLUMNS if name != "score"))
            .add_columns(EVALUATIONS.c.score)
            .outerjoin(EVALUATIONS, EVALUATIONS.c.program_id == PROGRAMS.c.id)
            .where(PROGRAMS.c.run_id == run_id, PROGRAMS.c.updated_at >= since)
            .order_by(PROGRAMS.c.seq)
        )
        with self._conn() as conn:
            rows = [list(row) for row in conn.execute(query)]
        rows = [[*row[:7], row[8], row[7]] for row in rows]  # score before updated_at
        culled = 0
        faint = [i for i, row in enumerate(rows) if row[6] in _FAINT]
        if limit and len(faint) > limit:
            drop = set(faint[: len(faint) - limit])
            culled = len(drop)
            rows = [row for i, row in enumerate(rows) if i not in drop]
        newest = max((row[8] for row in rows), default=since)
        return {"columns": TREE_COLUMNS, "rows": rows, "culled": culled, "max_updated": newest}

    def cells(self, run_id: str) -> list[dict[str, Any]]:
        """Return every MAP-Elites cell of the run: island, key, elite id and score."""
        query = select(CELLS).where(CELLS.c.run_id == run_id).order_by(CELLS.c.island, CELLS.c.key)
        with self._conn() as conn:
            rows = conn.execute(query).all()
        return [
            {"island": r.island, "key": r.key, "program_id": r.program_id, "score": r.score}
            for r in rows
        ]

    def program(self, run_id: str, program_id: str) -> dict[str, Any] | None:
        """Return one program with its evaluation and LLM accounting (None if unknown)."""
        with self._conn() as conn:
            row = conn.execute(
                select(PROGRAMS).where(PROGRAMS.c.run_id == run_id, PROGRAMS.c.id == program_id)
            ).first()
            if row is None:
                return None
            found = conn.execute(
                select(EVALUATIONS).where(EVALUATIONS.c.program_id == program_id)
            ).first()
            calls = conn.execute(
                select(
                    func.coalesce(func.sum(LLM_CALLS.c.prompt_tokens), 0),
                    func.coalesce(func.sum(LLM_CALLS.c.completion_tokens), 0),
                    func.coalesce(func.sum(LLM_CALLS.c.cost_usd), 0.0),
                ).where(LLM_CALLS.c.program_id == program_id)
            ).one()
            elite = conn.execute(
                select(CELLS.c.key).where(CELLS.c.run_id == run_id, CELLS.c.program_id == row.id)
            ).scalar()
            reply = conn.execute(
                select(func.substr(REPLIES.c.text, 1, REPLY_CHARS + 1)).where(
                    REPLIES.c.program_id == program_id
                )
            ).scalar()
        out = {name: getattr(row, name) for name in PROGRAMS.c.keys()}
        out["files_changed"] = json.loads(row.files_changed)
        out["elite_cell"] = elite
        out["prompt_tokens"], out["completion_tokens"] = int(calls[0]), int(calls[1])
        out["cost_usd"] = float(calls[2])
        out["evaluation"] = None if found is None else _evaluation_dict(found)
        out["reply"] = (reply or "")[:REPLY_CHARS]
        out["reply_truncated"] = len(reply or "") > REPLY_CHARS
        return out

    def summary(self, run_id: str) -> dict[str, Any]:
        """Return the run's headline counts: programs, evaluated, replies, acceptance."""
        with self._conn() as conn:
            found = counts(conn, run_id)
        keys = ("programs", "evaluated", "replies", "accepted", "acceptance", "duplicates")
        return {key: found[key] for key in keys}

    def meta_notes(self, run_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """Return the run's meta-recommendations, newest first (at most ``limit``)."""
        m = META_NOTES.c
        query = (
            select(m.at_evaluated, m.model, m.text, m.created_at)
            .where(m.run_id == run_id)
            .order_by(m.id.desc())
            .limit(limit)
        )
        with self._conn() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def series(self, run_id: str) -> dict[str, Any]:
        """Return what the charts need: evaluations over time, failure reasons, cost by model.

        Returns:
            ``{"points": [[time, score|None, status]], "failures": {reason: n},
            "models": [{model, calls, prompt_tokens, completion_tokens, cost_usd}],
            "started": run start time}``.
        """
        points = (
            select(EVALUATIONS.c.created_at, EVALUATIONS.c.score, EVALUATIONS.c.status)
            .join(PROGRAMS, PROGRAMS.c.id == EVALUATIONS.c.program_id)
            .where(PROGRAMS.c.run_id == run_id)
            .order_by(EVALUATIONS.c.created_at)
        )
        reasons = (
            select(PROGRAMS.c.reason, func.count())
            .where(PROGRAMS.c.run_id == run_id, PROGRAMS.c.status.in_(_FAINT))
            .group_by(PROGRAMS.c.reason)
        )
        models = (
            select(
                LLM_CALLS.c.model,
                func.count(),
                func.sum(LLM_CALLS.c.prompt_tokens),
                func.sum(LLM_CALLS.c.completion_tokens),
                func.sum(LLM_CALLS.c.cost_usd),
            )
            .where(LLM_CALLS.c.run_id == run_id)
            .group_by(LLM_CALLS.c.model)
        )
        with self._conn() as conn:
            out = {"points": [list(row) for row in conn.execute(points)]}
            failures: dict[str, int] = {}
            for reason, count in conn.execute(reasons):
                key = failure_kind(reason)
                failures[key] = failures.get(key, 0) + count
            out["failures"] = failures
            keys = ("model", "calls", "prompt_tokens", "completion_tokens", "cost_usd")
            out["models"] = [dict(zip(keys, row, strict=True)) for row in conn.execute(models)]
            started = conn.execute(select(RUNS.c.created_at).where(RUNS.c.id == run_id)).scalar()
        out["started"] = started or 0.0
        return out

    @contextmanager
    def _conn(self) -> Iterator[Connection]:
        """Yield a read-only connection (SQLite: a deferred transaction, never a write lock)."""
        with self._lock:
            if self._engine is None:
                self._engine = make_engine(self._url).execution_options(**{READONLY: True})
            engine = self._engine
        with engine.connect() as conn:
            yield conn


def failure_kind(reason: str) -> str:
    """Group a failure or rejection reason by its first clause, e.g. ``"timeout"``."""
    head = (reason or "unknown").strip().splitlines()[0] if reason and reason.strip() else "unknown"
    head = head.split(":", 1)[0].strip()
    return head[:60] or "unknown"


def _evaluation_dict(row: Any) -> dict[str, Any]:
    """Return an ``evaluations`` row as a JSON-ready dict."""
    out = {name: getattr(row, name) for name in EVALUATIONS.c.keys()}
    for name in ("metrics", "features", "artifacts"):
        out[name] = json.loads(out[name] or "{}")
    return out
