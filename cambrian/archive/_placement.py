"""SQL of ``SqlArchive.add``: cell placement, selection counters, ring migration, island reset.

Each function runs inside the caller's write transaction, after ``lock_run``, so that
concurrent workers serialise on the run row (PostgreSQL) or on ``BEGIN IMMEDIATE`` (SQLite).
"""

from __future__ import annotations

import json
import math

from sqlalchemy import Connection, case, delete, insert, literal, select, update

from cambrian.archive._cells import is_better
from cambrian.archive._queries import CELLS, EVALUATIONS, PROGRAMS, RUNS
from cambrian.archive._schema import MigrationRow
from cambrian.types import AddStatus

MIGRATIONS = MigrationRow.__table__


def lock_run(conn: Connection, run_id: str) -> None:
    """Take the run row's lock (PostgreSQL ``FOR UPDATE``; SQLite already holds the db lock)."""
    if conn.dialect.name != "sqlite":
        conn.execute(select(RUNS.c.id).where(RUNS.c.id == run_id).with_for_update())


def place_in(
    conn: Connection,
    run_id: str,
    island: int,
    key: str,
    program_id: str,
    score: float,
    maximize: bool,
) -> AddStatus:
    """Put a program in (island, key) if the cell is empty or it strictly beats the elite."""
    if math.isnan(score):
        return AddStatus.NOT_ADDED
    where = (CELLS.c.run_id == run_id, CELLS.c.island == island, CELLS.c.key == key)
    incumbent = conn.execute(select(CELLS.c.score).where(*where).with_for_update()).scalar()
    if not is_better(score, incumbent, maximize):
        return AddStatus.NOT_ADDED
    if incumbent is None:
        cell = {"run_id": run_id, "island": island, "key": key}
        conn.execute(insert(CELLS).values(program_id=program_id, score=score, **cell))
        return AddStatus.NEW_CELL
    conn.execute(update(CELLS).where(*where).values(program_id=program_id, score=score))
    return AddStatus.IMPROVED


def ancestor_ids(conn: Connection, program_id: str, depth: int) -> list[str]:
    """Return the ids of ``program_id`` and its ancestors, nearest first, ``depth`` in all."""
    start = select(PROGRAMS.c.id, PROGRAMS.c.parent_id, literal(1).label("depth"))
    anc = start.where(PROGRAMS.c.id == program_id).cte("anc", recursive=True)
    step = select(PROGRAMS.c.id, PROGRAMS.c.parent_id, (anc.c.depth + 1).label("depth"))
    anc = anc.union_all(step.join(anc, PROGRAMS.c.id == anc.c.parent_id).where(anc.c.depth < depth))
    return list(conn.execute(select(anc.c.id).order_by(anc.c.depth)).scalars())


def record_outcome(
    conn: Connection, parent_id: str, score: float | None, maximize: bool, depth: int
) -> None:
    """Count an evaluated child on its parent and, as a clade trial, on ``depth`` ancestors.

    A success is an ok child that beats its parent (any ok child of a failed parent).
    """
    parent_score = conn.execute(
        select(EVALUATIONS.c.score).where(EVALUATIONS.c.program_id == parent_id)
    ).scalar()
    won = score is not None and (parent_score is None or is_better(score, parent_score, maximize))
    is_parent = case((PROGRAMS.c.id == parent_id, 1), else_=0)
    conn.execute(
        update(PROGRAMS)
        .where(PROGRAMS.c.id.in_(ancestor_ids(conn, parent_id, depth)))
        .values(
            children=PROGRAMS.c.children + is_parent,
            successes=PROGRAMS.c.successes + is_parent * int(won),
            clade_trials=PROGRAMS.c.clade_trials + 1,
            clade_successes=PROGRAMS.c.clade_successes + int(won),
        )
    )


def count_evaluated(conn: Connection, run_id: str) -> int:
    """Add one evaluated candidate to the run's counter and return the new count."""
    bump = update(RUNS).where(RUNS.c.id == run_id).values(evaluated=RUNS.c.evaluated + 1)
    return conn.execute(bump.returning(RUNS.c.evaluated)).scalar_one()


def _top_cells(conn: Connection, run_id: str, island: int, n: int, maximize: bool) -> list:
    """The island's ``n`` best cells: (key, program_id, score), best first (key on ties)."""
    order = CELLS.c.score.desc() if maximize else CELLS.c.score.asc()
    query = select(CELLS.c.key, CELLS.c.program_id, CELLS.c.score).where(
        CELLS.c.run_id == run_id, CELLS.c.island == island
    )
    return list(conn.execute(query.order_by(order, CELLS.c.key).limit(n)))


def migrate_ring(
    conn: Connection, run_id: str, islands: int, migrants: int, at: int, maximize: bool
) -> int:
    """Copy each island's best elites into the next island's same cells; return how many moved.

    Migrants keep their program (and so their lineage); the sources are read before any
    copy, so one migration moves an elite one hop only.
    """
    plan = [(i, _top_cells(conn, run_id, i, migrants, maximize)) for i in range(islands)]
    moved = 0
    for source, cells in plan:
        target = (source + 1) % islands
        for key, program_id, score in cells:
            if (
                place_in(conn, run_id, target, key, program_id, score, maximize)
                is AddStatus.NOT_ADDED
            ):
                continue
            moved += 1
            _log(conn, run_id, at, "migrate", target, key, program_id)
    return moved


def reset_weak_islands(
    conn: Connection, run_id: str, islands: int, at: int, maximize: bool
) -> list[int]:
    """Empty the weaker half of the islands and reseed each with the best elite of the others.

    Returns:
        The reset islands (none when fewer than two islands have elites).
    """
    best = {
        i: cells[0] for i in range(islands) if (cells := _top_cells(conn, run_id, i, 1, maximize))
    }
    if islands < 2:
        return []
    sign = 1.0 if maximize else -1.0
    ranked = sorted(
        range(islands), key=lambda i: (sign * best[i][2], -i) if i in best else (-math.inf, -i)
    )
    weak, strong = ranked[: islands // 2], ranked[islands // 2 :]
    seeds = [best[i] for i in strong if i in best]
    if not seeds:
        return []
    key, program_id, score = max(seeds, key=lambda cell: sign * cell[2])
    for island in weak:
        conn.execute(delete(CELLS).where(CELLS.c.run_id == run_id, CELLS.c.island == island))
        place_in(conn, run_id, island, key, program_id, score, maximize)
        _log(conn, run_id, at, "reset", island, key, program_id)
    return weak


def _log(
    conn: Connection, run_id: str, at: int, kind: str, island: int, key: str, program_id: str
) -> None:
    """Record one placement made by a migration or a reset."""
    values = {"run_id": run_id, "at_evaluated": at, "kind": kind, "island": island, "key": key}
    conn.execute(insert(MIGRATIONS).values(program_id=program_id, **values))


def stored_centroids(conn: Connection, run_id: str) -> list[list[float]] | None:
    """The run's stored CVT centroids, if any."""
    text = conn.execute(select(RUNS.c.centroids).where(RUNS.c.id == run_id)).scalar()
    return None if text is None else json.loads(text)


def store_centroids(conn: Connection, run_id: str, fresh: list[list[float]]) -> list[list[float]]:
    """Store ``fresh`` unless centroids exist; return the stored ones (the first writer wins)."""
    conn.execute(
        update(RUNS)
        .where(RUNS.c.id == run_id, RUNS.c.centroids.is_(None))
        .values(centroids=json.dumps(fresh))
    )
    return stored_centroids(conn, run_id) or fresh
