"""The search ledger of ``SqlArchive``: LLM calls, kept replies and meta-recommendations.

Subclasses provide ``_read()``, ``_write()`` and the run's attributes, as for reads.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, case, func, insert, select

from cambrian.archive import _queries as q
from cambrian.archive._model_stats import outcome_stats
from cambrian.archive._queries import EVALUATIONS, LLM_CALLS, PROGRAMS
from cambrian.archive._schema import MetaNoteRow, ReplyRow
from cambrian.types import ProgramStatus

REPLIES = ReplyRow.__table__
META_NOTES = MetaNoteRow.__table__
#: What an LLM call was for: a proposal, a repair turn after a rejected reply, meta advice.
PURPOSES = ("propose", "repair", "meta")
_FINISHED = (ProgramStatus.EVALUATED, ProgramStatus.FAILED, ProgramStatus.REJECTED)


@dataclass(frozen=True)
class CallRecord:
    """One LLM call as the ledger stores it (see ``ArchiveLedger.record_llm_call``)."""

    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    ok: bool = True
    error: str = ""
    purpose: str = "propose"

    def __post_init__(self) -> None:
        if self.purpose not in PURPOSES:
            raise ValueError(f"purpose must be one of {', '.join(PURPOSES)}, got {self.purpose!r}")


def insert_calls(
    conn: Connection, run_id: str, program_id: str | None, calls: Sequence[CallRecord], now: float
) -> None:
    """Insert ``calls`` of ``program_id`` (None: no program came of them), in one statement."""
    if calls:
        rows = [
            {"run_id": run_id, "program_id": program_id, "created_at": now, **asdict(call)}
            for call in calls
        ]
        conn.execute(insert(LLM_CALLS), rows)


class ArchiveLedger:
    """LLM accounting and the texts a run keeps besides programs."""

    _run_id: str
    _maximize: bool

    def _read(self) -> AbstractContextManager[Connection]:
        """Yield a connection for reads."""
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Connection]:
        """Yield a connection in a write transaction."""
        raise NotImplementedError

    def record_llm_call(
        self,
        program_id: str | None,
        model: str,
        *,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost_usd: float = 0.0,
        latency_s: float = 0.0,
        ok: bool = True,
        error: str = "",
        purpose: str = "propose",
    ) -> None:
        """Record one LLM call and its cost (``program_id`` None when no program came of it).

        Raises:
            ValueError: If ``purpose`` is not one of ``PURPOSES``.
        """
        call = CallRecord(
            model, prompt_tokens, completion_tokens, cost_usd, latency_s, ok, error, purpose
        )
        now = time.time()
        with self._write() as conn:
            insert_calls(conn, self._run_id, program_id, [call], now)
            q.touch(conn, self._run_id, now)

    def reply(self, program_id: str) -> str:
        """Return the kept reply of a program ("" when none was kept)."""
        query = select(REPLIES.c.text).where(REPLIES.c.program_id == program_id)
        with self._read() as conn:
            return conn.execute(query).scalar() or ""

    def add_meta_note(self, at_evaluated: int, model: str, text: str) -> None:
        """Store one meta-recommendation, written after ``at_evaluated`` evaluations."""
        now = time.time()
        values = {"run_id": self._run_id, "at_evaluated": at_evaluated, "model": model}
        with self._write() as conn:
            conn.execute(insert(META_NOTES).values(text=text, created_at=now, **values))
            q.touch(conn, self._run_id, now)

    def meta_notes(self, limit: int = 0) -> list[dict[str, Any]]:
        """Return the run's meta-recommendations, newest first (``limit`` 0: all)."""
        query = (
            select(META_NOTES.c.at_evaluated, META_NOTES.c.model, META_NOTES.c.text)
            .add_columns(META_NOTES.c.created_at)
            .where(META_NOTES.c.run_id == self._run_id)
            .order_by(META_NOTES.c.id.desc())
        )
        if limit:
            query = query.limit(limit)
        with self._read() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def meta_note_count(self) -> int:
        """Return how many meta-recommendations the run has."""
        query = select(func.count()).where(META_NOTES.c.run_id == self._run_id)
        with self._read() as conn:
            return conn.execute(query).scalar_one()

    def recent_children(self, n: int) -> list[dict[str, Any]]:
        """Return the newest ``n`` finished children (evaluated, failed or rejected).

        Each row: ``id``, ``parent_id``, ``status`` (the program's), ``reason`` (the
        evaluation's, else the program's), ``score`` and ``parent_score`` (None unless
        that evaluation is ok), ``commit``, ``parent_commit`` and ``operator``.
        """
        child, parent = EVALUATIONS.alias("child_eval"), EVALUATIONS.alias("parent_eval")
        up = PROGRAMS.alias("parent_program")
        p = PROGRAMS.c
        query = (
            select(p.id, p.parent_id, p.status, p.commit, p.operator, p.model)
            .add_columns(
                func.coalesce(func.nullif(child.c.reason, ""), p.reason).label("reason"),
                case((child.c.status == "ok", child.c.score)).label("score"),
                case((parent.c.status == "ok", parent.c.score)).label("parent_score"),
                up.c.commit.label("parent_commit"),
            )
            .select_from(
                PROGRAMS.outerjoin(child, child.c.program_id == p.id)
                .outerjoin(parent, parent.c.program_id == p.parent_id)
                .outerjoin(up, up.c.id == p.parent_id)
            )
            .where(p.run_id == self._run_id, p.parent_id.is_not(None))
            .where(p.status.in_([str(status) for status in _FINISHED]))
            .order_by(p.seq.desc())
            .limit(n)
        )
        with self._read() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def operator_stats(self) -> dict[str, dict[str, Any]]:
        """Per variation operator: children, outcomes, improvements and their sum."""
        with self._read() as conn:
            return outcome_stats(conn, self._run_id, self._maximize, "operator")
