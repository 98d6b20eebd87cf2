"""SQL statements of ``SqlArchive`` that take part in larger transactions (one run each)."""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update

from cambrian.archive._rows import program_values
from cambrian.archive._schema import CellRow, EvaluationRow, LlmCallRow, ProgramRow, RunRow
from cambrian.archive._selection import EliteRow, draw_by_rejection
from cambrian.types import Program, ProgramStatus

RUNS = RunRow.__table__
PROGRAMS = ProgramRow.__table__
EVALUATIONS = EvaluationRow.__table__
CELLS = CellRow.__table__
LLM_CALLS = LlmCallRow.__table__
#: A duplicate child says nothing about its model or operator: the bandits skip it live,
#: and so does the state rebuilt on resume.
DUPLICATE_ROW = and_(
    PROGRAMS.c.status == str(ProgramStatus.REJECTED), PROGRAMS.c.reason.like("duplicate:%")
)


def touch(conn: Connection, run_id: str, now: float) -> None:
    """Set the run's ``updated_at``."""
    conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(updated_at=now))


def insert_program(
    conn: Connection, run_id: str, program: Program, now: float, owner: str | None = None
) -> None:
    """Insert a program row with the run's next sequence number, owned by ``owner``."""
    last = select(func.max(PROGRAMS.c.seq)).where(PROGRAMS.c.run_id == run_id)
    seq = (conn.execute(last).scalar() or 0) + 1
    values = program_values(program, run_id, seq, now)
    conn.execute(insert(PROGRAMS).values(owner=owner, **values))


def upsert_program(
    conn: Connection, run_id: str, program: Program, now: float, owner: str | None = None
) -> None:
    """Update a program's status and reason, inserting it if it was never stored."""
    result = conn.execute(
        update(PROGRAMS)
        .where(PROGRAMS.c.id == program.id, PROGRAMS.c.run_id == run_id)
        .values(status=str(program.status), reason=program.reason, updated_at=now)
    )
    if result.rowcount == 0:
        insert_program(conn, run_id, program, now, owner)


def elites(conn: Connection, run_id: str, island: int, counters: bool = False) -> list[EliteRow]:
    """Return the island's cell elites ordered by cell key (with selection counters if asked)."""
    where = (CELLS.c.run_id == run_id, CELLS.c.island == island)
    if not counters:
        query = select(CELLS.c.program_id, CELLS.c.score).where(*where)
        return [EliteRow(pid, score) for pid, score in conn.execute(query.order_by(CELLS.c.key))]
    p = PROGRAMS.c
    query = (
        select(CELLS.c.program_id, CELLS.c.score, p.children, p.successes, p.clade_trials)
        .add_columns(p.clade_successes)
        .join(PROGRAMS, PROGRAMS.c.id == CELLS.c.program_id)
        .where(*where)
    )
    return [EliteRow(*row) for row in conn.execute(query.order_by(CELLS.c.key))]


def best_elite(conn: Connection, run_id: str, island: int, maximize: bool) -> str | None:
    """Return the id of the island's best cell elite (the earliest program on ties)."""
    order = CELLS.c.score.desc() if maximize else CELLS.c.score.asc()
    query = (
        select(CELLS.c.program_id)
        .join(PROGRAMS, PROGRAMS.c.id == CELLS.c.program_id)
        .where(CELLS.c.run_id == run_id, CELLS.c.island == island)
        .order_by(order, PROGRAMS.c.seq)
    )
    return conn.execute(query.limit(1)).scalar()


def random_evaluated(conn: Connection, run_id: str, island: int, rng: random.Random) -> str | None:
    """Return a uniformly random evaluated program of the island (None when it has none).

    Random seqs are probed through the (run, seq) index first; only when they all miss
    (few evaluated programs among many) does it count them and take one at a random offset.
    """
    p = PROGRAMS.c
    where = (p.run_id == run_id, p.island == island, p.status == str(ProgramStatus.EVALUATED))

    def lookup(seqs: list[int]) -> dict[int, str]:
        query = select(p.seq, p.id).where(*where, p.seq.in_(sorted(set(seqs))))
        return {seq: pid for seq, pid in conn.execute(query)}

    high = conn.execute(select(func.max(p.seq)).where(p.run_id == run_id)).scalar() or 0
    found = draw_by_rejection(rng, high, lookup)
    if found is not None:
        return found
    total = conn.execute(select(func.count()).where(*where)).scalar_one()
    if not total:
        return None
    query = select(p.id).where(*where).order_by(p.seq).offset(rng.randrange(total)).limit(1)
    return conn.execute(query).scalar()


def best_others(
    conn: Connection, run_id: str, island: int, exclude: list[str], n: int, maximize: bool
) -> list[str]:
    """Return ids of the island's best ok-evaluated programs outside ``exclude``."""
    score = EVALUATIONS.c.score
    query = (
        select(PROGRAMS.c.id)
        .join(EVALUATIONS, EVALUATIONS.c.program_id == PROGRAMS.c.id)
        .where(
            PROGRAMS.c.run_id == run_id,
            PROGRAMS.c.island == island,
            PROGRAMS.c.status == str(ProgramStatus.EVALUATED),
            score.is_not(None),
            PROGRAMS.c.id.not_in(exclude),
        )
        .order_by(score.desc() if maximize else score.asc(), PROGRAMS.c.seq)
    )
    return list(conn.execute(query.limit(n)).scalars())


def counts(conn: Connection, run_id: str) -> dict[str, Any]:
    """Return the count-based part of ``SqlArchive.stats()``."""
    by_status = {str(s): 0 for s in ProgramStatus}
    grouped = select(PROGRAMS.c.status, func.count()).where(PROGRAMS.c.run_id == run_id)
    for status, count in conn.execute(grouped.group_by(PROGRAMS.c.status)):
        by_status[status] = count
    evaluated = (
        select(func.count())
        .select_from(EVALUATIONS.join(PROGRAMS, PROGRAMS.c.id == EVALUATIONS.c.program_id))
        .where(PROGRAMS.c.run_id == run_id, PROGRAMS.c.parent_id.is_not(None))
    )
    calls = conn.execute(
        select(
            func.count(),
            func.coalesce(func.sum(LLM_CALLS.c.prompt_tokens), 0),
            func.coalesce(func.sum(LLM_CALLS.c.completion_tokens), 0),
            func.coalesce(func.sum(LLM_CALLS.c.cost_usd), 0.0),
        ).where(LLM_CALLS.c.run_id == run_id)
    ).one()
    span = conn.execute(
        select(RUNS.c.created_at, RUNS.c.updated_at).where(RUNS.c.id == run_id)
    ).first()
    cells = select(func.count()).select_from(CELLS).where(CELLS.c.run_id == run_id)
    replies = conn.execute(
        select(func.count()).where(
            LLM_CALLS.c.run_id == run_id,
            LLM_CALLS.c.ok,
            LLM_CALLS.c.purpose.in_(("propose", "repair")),
        )
    ).scalar_one()
    # Accepted: children that reached the evaluator (or wait for it); rejections did not.
    accepted = conn.execute(
        select(func.count()).where(
            PROGRAMS.c.run_id == run_id,
            PROGRAMS.c.parent_id.is_not(None),
            PROGRAMS.c.status != str(ProgramStatus.REJECTED),
        )
    ).scalar_one()
    return {
        "run_id": run_id,
        "programs": sum(by_status.values()),
        "by_status": by_status,
        "evaluated": conn.execute(evaluated).scalar_one(),
        "llm_calls": calls[0],
        "prompt_tokens": int(calls[1]),
        "completion_tokens": int(calls[2]),
        "cost_usd": float(calls[3]),
        "elapsed_s": 0.0 if span is None else span.updated_at - span.created_at,
        "cells": conn.execute(cells).scalar_one(),
        "replies": replies,
        "accepted": accepted,
        "acceptance": accepted / replies if replies else None,
        "duplicates": conn.execute(
            select(func.count()).where(PROGRAMS.c.run_id == run_id, DUPLICATE_ROW)
        ).scalar_one(),
        "accepted_by_operator": _accepted_by_operator(conn, run_id),
        "stopped_by_stage": _stopped_by_stage(conn, run_id),
    }


def _accepted_by_operator(conn: Connection, run_id: str) -> dict[str, int]:
    """Per variation operator, the children that reached the evaluator."""
    op = PROGRAMS.c.operator
    query = select(op, func.count()).where(
        PROGRAMS.c.run_id == run_id,
        PROGRAMS.c.parent_id.is_not(None),
        PROGRAMS.c.status != str(ProgramStatus.REJECTED),
        op.is_not(None),
        op != "",
    )
    return dict(conn.execute(query.group_by(op)).all())


def _stopped_by_stage(conn: Connection, run_id: str) -> dict[str, int]:
    """Per cascade stage, the evaluations its ``min_score`` stopped (keys as JSON strings)."""
    stage = EVALUATIONS.c.stage
    query = (
        select(stage, func.count())
        .join(PROGRAMS, PROGRAMS.c.id == EVALUATIONS.c.program_id)
        .where(PROGRAMS.c.run_id == run_id, EVALUATIONS.c.status == "stopped")
    )
    return {str(key): count for key, count in conn.execute(query.group_by(stage).order_by(stage))}
