"""SQL statements of ``SqlArchive`` that take part in larger transactions (one run each)."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from cambrian.archive._cells import is_better
from cambrian.archive._rows import program_values
from cambrian.archive._schema import CellRow, EvaluationRow, LlmCallRow, ProgramRow, RunRow
from cambrian.types import AddStatus, Program, ProgramStatus

RUNS = RunRow.__table__
PROGRAMS = ProgramRow.__table__
EVALUATIONS = EvaluationRow.__table__
CELLS = CellRow.__table__
LLM_CALLS = LlmCallRow.__table__


def touch(conn: Connection, run_id: str, now: float) -> None:
    """Set the run's ``updated_at``."""
    conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(updated_at=now))


def insert_program(conn: Connection, run_id: str, program: Program, now: float) -> None:
    """Insert a program row with the run's next sequence number."""
    last = select(func.max(PROGRAMS.c.seq)).where(PROGRAMS.c.run_id == run_id)
    seq = (conn.execute(last).scalar() or 0) + 1
    conn.execute(insert(PROGRAMS).values(program_values(program, run_id, seq, now)))


def upsert_program(conn: Connection, run_id: str, program: Program, now: float) -> None:
    """Update a program's status and reason, inserting it if it was never stored."""
    result = conn.execute(
        update(PROGRAMS)
        .where(PROGRAMS.c.id == program.id, PROGRAMS.c.run_id == run_id)
        .values(status=str(program.status), reason=program.reason, updated_at=now)
    )
    if result.rowcount == 0:
        insert_program(conn, run_id, program, now)


def place(
    conn: Connection, run_id: str, program: Program, key: str, score: float, maximize: bool
) -> AddStatus:
    """Put the program in cell ``key`` if the cell is empty or it strictly beats the elite."""
    if math.isnan(score):
        return AddStatus.NOT_ADDED
    where = (CELLS.c.run_id == run_id, CELLS.c.island == program.island, CELLS.c.key == key)
    incumbent = conn.execute(select(CELLS.c.score).where(*where).with_for_update()).scalar()
    if not is_better(score, incumbent, maximize):
        return AddStatus.NOT_ADDED
    if incumbent is None:
        cell = {"run_id": run_id, "island": program.island, "key": key}
        conn.execute(insert(CELLS).values(program_id=program.id, score=score, **cell))
        return AddStatus.NEW_CELL
    conn.execute(update(CELLS).where(*where).values(program_id=program.id, score=score))
    return AddStatus.IMPROVED


def elites(conn: Connection, run_id: str, island: int) -> list[tuple[str, float]]:
    """Return ``(program_id, score)`` of the island's cell elites, ordered by cell key."""
    query = select(CELLS.c.program_id, CELLS.c.score).where(
        CELLS.c.run_id == run_id, CELLS.c.island == island
    )
    return [(pid, score) for pid, score in conn.execute(query.order_by(CELLS.c.key))]


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
    }
