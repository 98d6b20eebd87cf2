"""``SqlArchive``: programs, evaluations, MAP-Elites cells and LLM accounting in SQL."""

from __future__ import annotations

import json
import random
import string
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from cambrian.archive import _queries as q
from cambrian.archive._cells import cell_key
from cambrian.archive._migrate import READONLY, make_engine, upgrade
from cambrian.archive._queries import CELLS, EVALUATIONS, LLM_CALLS, PROGRAMS, RUNS
from cambrian.archive._rows import evaluation_from_row, evaluation_values, program_from_row
from cambrian.archive._selection import pick_inspirations, select_parent
from cambrian.config import ArchiveConfig
from cambrian.errors import ArchiveError
from cambrian.types import AddStatus, Evaluation, Program, ProgramStatus

_PENDING = (ProgramStatus.PROPOSED, ProgramStatus.EVALUATING, ProgramStatus.INTERRUPTED)
_REFUSED = (ProgramStatus.REJECTED, ProgramStatus.FAILED)


def new_program_id() -> str:
    """Return a fresh program id: 12 hex digits of a uuid4."""
    return uuid.uuid4().hex[:12]


class SqlArchive:
    """The archive of one run in any SQLAlchemy database (SQLite by default).

    Implements the ``Archive`` Protocol. Every state change is committed at once, so a
    run killed at any moment resumes from the database. Construction touches nothing;
    ``open()`` (called lazily by every method) creates the engine and migrates the schema.

    Args:
        config: The ``[archive]`` config section (islands, selection policy, feature axes).
        url: SQLAlchemy URL of the database, e.g. ``sqlite:///run/archive.db``.
        run_id: The run whose programs this instance reads and writes.
        maximize: True when higher scores are better.
        seed: Seed of this instance's own random generator (parent sampling).
    """

    def __init__(
        self,
        config: ArchiveConfig,
        *,
        url: str,
        run_id: str,
        maximize: bool = True,
        seed: int = 0,
    ) -> None:
        if not run_id:
            raise ValueError("run_id: must not be empty")
        if not url:
            raise ValueError("url: must not be empty")
        self._config = config
        self._url = url
        self._run_id = run_id
        self._maximize = maximize
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._reader: Engine | None = None

    @property
    def run_id(self) -> str:
        """The run this archive instance works on."""
        return self._run_id

    def open(self) -> None:
        """Create the engine and migrate the database to the newest schema (idempotent).

        Raises:
            ArchiveError: If the database cannot be reached or migrated.
        """
        with self._lock:
            if self._engine is not None:
                return
            engine = make_engine(self._url)
            try:
                upgrade(engine)
            except SQLAlchemyError as exc:
                engine.dispose()
                where = make_url(self._url).render_as_string(hide_password=True)
                raise ArchiveError(f"cannot open the archive at {where}: {exc}") from exc
            self._reader = engine.execution_options(**{READONLY: True})
            self._engine = engine

    def close(self) -> None:
        """Release the engine's connections; the archive reopens lazily if used again."""
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
            self._engine = self._reader = None

    def ensure_run(self, meta: dict[str, Any]) -> bool:
        """Create this run's row with ``meta`` unless it exists.

        Args:
            meta: JSON-serialisable run metadata (task dir, config, base commit...).

        Returns:
            True if the run was created, False if it existed (its meta is left as it was).
        """
        now = time.time()
        with self._write() as conn:
            if conn.execute(select(RUNS.c.id).where(RUNS.c.id == self._run_id)).first():
                return False
            values = {"created_at": now, "updated_at": now, "meta": json.dumps(meta, default=str)}
            conn.execute(insert(RUNS).values(id=self._run_id, **values))
        return True

    def run_meta(self) -> dict[str, Any]:
        """Return the metadata stored by ``ensure_run``.

        Raises:
            ArchiveError: If the run is not in the database.
        """
        with self._read() as conn:
            meta = conn.execute(select(RUNS.c.meta).where(RUNS.c.id == self._run_id)).scalar()
        if meta is None:
            raise ArchiveError(f"run {self._run_id!r} is not in the archive; start it first")
        return json.loads(meta)

    def new_program(self, program: Program) -> None:
        """Insert a new program (PROPOSED or REJECTED), giving it the run's next ``seq``.

        Raises:
            ValueError: If the status is another one, the id exists or the run is missing.
        """
        if program.status not in (ProgramStatus.PROPOSED, ProgramStatus.REJECTED):
            raise ValueError(
                f"program: a new program is proposed or rejected, not {program.status}"
            )
        now = time.time()
        try:
            with self._write() as conn:
                q.insert_program(conn, self._run_id, program, now)
                q.touch(conn, self._run_id, now)
        except IntegrityError as exc:
            raise ValueError(f"program: cannot insert {program.id}: {exc.orig}") from None

    def set_status(self, program_id: str, status: ProgramStatus, reason: str = "") -> None:
        """Set a program's lifecycle status and reason.

        Raises:
            KeyError: If the program is not in this run.
        """
        now = time.time()
        with self._write() as conn:
            result = conn.execute(
                update(PROGRAMS)
                .where(PROGRAMS.c.id == program_id, PROGRAMS.c.run_id == self._run_id)
                .values(status=str(status), reason=reason, updated_at=now)
            )
            if result.rowcount == 0:
                raise KeyError(f"no program {program_id!r} in run {self._run_id!r}")
            q.touch(conn, self._run_id, now)

    def add(self, program: Program, evaluation: Evaluation) -> AddStatus:
        """Store ``evaluation`` and place ``program`` in its cell if it wins, in one transaction.

        The program becomes EVALUATED (ok) or FAILED (reason from the evaluation); it is
        inserted first if it was never stored. An ok evaluation takes the cell of
        (island, features) when the cell is empty or it strictly beats the elite.

        Returns:
            NEW_CELL, IMPROVED, or NOT_ADDED (lost to the elite, or failed).

        Raises:
            ValueError: If the program already has an evaluation.
        """
        ok = evaluation.ok
        status = ProgramStatus.EVALUATED if ok else ProgramStatus.FAILED
        reason = "" if ok else (evaluation.reason or f"evaluation {evaluation.status}")
        stored = replace(program, status=status, reason=reason)
        now = time.time()
        try:
            with self._write() as conn:
                q.upsert_program(conn, self._run_id, stored, now)
                conn.execute(
                    insert(EVALUATIONS).values(evaluation_values(program.id, evaluation, now))
                )
                placed = AddStatus.NOT_ADDED
                if ok:
                    key = cell_key(evaluation.features, self._config.features)
                    score = float(evaluation.score)  # type: ignore[arg-type]  # ok: has a score
                    placed = q.place(conn, self._run_id, stored, key, score, self._maximize)
                q.touch(conn, self._run_id, now)
        except IntegrityError as exc:
            raise ValueError(
                f"program: cannot store the evaluation of {program.id}: {exc.orig}"
            ) from None
        return placed

    def sample_parent(self, island: int) -> Program | None:
        """Pick a parent among the island's cell elites with the configured policy.

        Returns:
            The chosen elite, or None when the island has none yet.
        """
        with self._read() as conn:
            elites = q.elites(conn, self._run_id, island)
            chosen = select_parent(self._config.selection, elites, self._maximize, self._rng)
            if chosen is None:
                return None
            row = conn.execute(select(PROGRAMS).where(PROGRAMS.c.id == chosen)).one()
        return program_from_row(row)

    def sample_inspirations(self, parent: Program, n: int, top_k: int = 1) -> list[Program]:
        """Pick up to ``n`` programs of the parent's island to show beside it.

        The ``top_k`` best cell elites come first, then random elites. When the island has
        too few elites, its best other evaluated programs fill the rest. The parent is never
        included and no program appears twice.
        """
        if n <= 0:
            return []
        with self._read() as conn:
            elites = q.elites(conn, self._run_id, parent.island)
            ids = pick_inspirations(
                elites, exclude=parent.id, n=n, top_k=top_k, maximize=self._maximize, rng=self._rng
            )
            if len(ids) < n:
                exclude = [parent.id, *ids]
                ids += q.best_others(
                    conn, self._run_id, parent.island, exclude, n - len(ids), self._maximize
                )
            rows = conn.execute(select(PROGRAMS).where(PROGRAMS.c.id.in_(ids))).all()
        by_id = {row.id: program_from_row(row) for row in rows}
        return [by_id[pid] for pid in ids]

    def get(self, program_id: str) -> Program:
        """Return the program with this id or unique id prefix.

        Raises:
            KeyError: If no program or several programs of the run match.
        """
        key = program_id.strip().lower()
        if not key or key.strip(string.hexdigits):
            raise KeyError(f"no program {program_id!r} in run {self._run_id!r}")
        match = PROGRAMS.c.id == key if len(key) >= 12 else PROGRAMS.c.id.startswith(key)
        query = select(PROGRAMS).where(PROGRAMS.c.run_id == self._run_id, match)
        with self._read() as conn:
            rows = conn.execute(query.order_by(PROGRAMS.c.seq).limit(2)).all()
        if not rows:
            raise KeyError(f"no program {program_id!r} in run {self._run_id!r}")
        if len(rows) > 1:
            raise KeyError(f"program id prefix {program_id!r} is ambiguous; give more digits")
        return program_from_row(rows[0])

    def evaluation(self, program_id: str) -> Evaluation | None:
        """Return the stored evaluation of a program (None if it has none)."""
        with self._read() as conn:
            row = conn.execute(
                select(EVALUATIONS).where(EVALUATIONS.c.program_id == program_id)
            ).first()
        return None if row is None else evaluation_from_row(row)

    def root(self) -> Program | None:
        """Return the run's initial program (the first one without a parent), if stored."""
        query = select(PROGRAMS).where(
            PROGRAMS.c.run_id == self._run_id, PROGRAMS.c.parent_id.is_(None)
        )
        with self._read() as conn:
            row = conn.execute(query.order_by(PROGRAMS.c.seq).limit(1)).first()
        return None if row is None else program_from_row(row)

    def best(self) -> tuple[Program, Evaluation] | None:
        """Return the best ok evaluation of the run with its program (earliest on ties).

        Every ok evaluation passes through a cell, so the best one is the best elite.
        """
        order = CELLS.c.score.desc() if self._maximize else CELLS.c.score.asc()
        query = (
            select(PROGRAMS)
            .join(CELLS, CELLS.c.program_id == PROGRAMS.c.id)
            .where(CELLS.c.run_id == self._run_id)
            .order_by(order, PROGRAMS.c.seq)
            .limit(1)
        )
        with self._read() as conn:
            row = conn.execute(query).first()
            if row is None:
                return None
            found = conn.execute(select(EVALUATIONS).where(EVALUATIONS.c.program_id == row.id))
            return program_from_row(row), evaluation_from_row(found.one())

    def pending(self) -> list[Program]:
        """Return programs still to evaluate (proposed, evaluating, interrupted) in seq order."""
        query = select(PROGRAMS).where(
            PROGRAMS.c.run_id == self._run_id,
            PROGRAMS.c.status.in_([str(s) for s in _PENDING]),
        )
        with self._read() as conn:
            rows = conn.execute(query.order_by(PROGRAMS.c.seq)).all()
        return [program_from_row(row) for row in rows]

    def has_tree(self, tree: str) -> bool:
        """Return whether a program of this run (not rejected) has this git tree sha."""
        if not tree:
            return False
        query = select(PROGRAMS.c.id).where(
            PROGRAMS.c.run_id == self._run_id,
            PROGRAMS.c.tree == tree,
            PROGRAMS.c.status != str(ProgramStatus.REJECTED),
        )
        with self._read() as conn:
            return conn.execute(query.limit(1)).first() is not None

    def recent_rejections(self, parent_id: str, n: int) -> list[str]:
        """Return the reasons of the parent's latest rejected or failed children, newest first."""
        if n <= 0:
            return []
        query = select(PROGRAMS.c.reason).where(
            PROGRAMS.c.run_id == self._run_id,
            PROGRAMS.c.parent_id == parent_id,
            PROGRAMS.c.status.in_([str(s) for s in _REFUSED]),
        )
        with self._read() as conn:
            return list(conn.execute(query.order_by(PROGRAMS.c.seq.desc()).limit(n)).scalars())

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
    ) -> None:
        """Record one LLM call and its cost (``program_id`` None when no program came of it)."""
        now = time.time()
        values = {
            "run_id": self._run_id,
            "program_id": program_id,
            "model": model,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "cost_usd": cost_usd,
            "latency_s": latency_s,
            "ok": ok,
            "error": error,
            "created_at": now,
        }
        with self._write() as conn:
            conn.execute(insert(LLM_CALLS).values(values))
            q.touch(conn, self._run_id, now)

    def stats(self) -> dict[str, Any]:
        """Return counts by status, evaluations, best score, LLM usage, elapsed time, cells."""
        best = self.best()
        with self._read() as conn:
            out = q.counts(conn, self._run_id)
        out["islands"] = self._config.islands
        out["best_score"] = None if best is None else best[1].score
        out["best_program"] = None if best is None else best[0].id
        return out

    # -- private helpers ---------------------------------------------------------------

    def _engines(self) -> tuple[Engine, Engine]:
        """Return the (writer, reader) engines, opening the archive on first use."""
        if self._engine is None:
            self.open()
        engine, reader = self._engine, self._reader
        if engine is None or reader is None:
            raise ArchiveError("the archive was closed while in use")
        return engine, reader

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """Yield a connection inside a write transaction, committed on exit."""
        with self._engines()[0].begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """Yield a connection for reads (SQLite: a deferred transaction)."""
        with self._engines()[1].connect() as conn:
            yield conn
