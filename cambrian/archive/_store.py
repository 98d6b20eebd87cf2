"""``SqlArchive``: programs, evaluations, MAP-Elites cells and LLM accounting in SQL."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from cambrian.archive import _ownership as own
from cambrian.archive import _placement as pl
from cambrian.archive import _queries as q
from cambrian.archive._cells import cell_key, cvt_centroids, cvt_key
from cambrian.archive._ledger import REPLIES, ArchiveLedger, CallRecord, insert_calls
from cambrian.archive._migrate import READONLY, make_engine, upgrade
from cambrian.archive._queries import EVALUATIONS, PROGRAMS, RUNS
from cambrian.archive._reads import ArchiveReads
from cambrian.archive._rows import evaluation_values, program_from_row
from cambrian.archive._selection import COUNTER_POLICIES, pick_inspirations, select_parent
from cambrian.config import ArchiveConfig
from cambrian.errors import ArchiveError
from cambrian.types import AddStatus, Evaluation, Program, ProgramStatus


def new_program_id() -> str:
    """Return a fresh program id: 12 hex digits of a uuid4."""
    return uuid.uuid4().hex[:12]


class SqlArchive(ArchiveReads, ArchiveLedger):
    """The archive of one run in any SQLAlchemy database (SQLite or PostgreSQL).

    Implements the ``Archive`` Protocol. Every state change is committed at once, so a
    run killed at any moment resumes from the database. Construction touches nothing;
    ``open()`` (called lazily by every method) creates the engine and migrates the schema.
    Several processes may share one run: each instance is a worker that owns the programs
    it proposes (see ``join`` and ``pending``); cell updates lock the run row.

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
        self._seed = seed
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._worker = uuid.uuid4().hex
        self._joined = False
        self._centroids: list[list[float]] | None = None
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
        """Leave the run (if joined) and release the engine; it reopens lazily if used again."""
        with self._lock:
            if self._engine is not None:
                if self._joined:
                    with self._engine.begin() as conn:
                        own.leave(conn, self._worker)
                    self._joined = False
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

    def new_program(
        self, program: Program, *, reply: str = "", calls: Sequence[CallRecord] = ()
    ) -> None:
        """Insert a new program (PROPOSED or REJECTED), giving it the run's next ``seq``.

        One transaction stores it with the reply it came from (kept when not empty) and
        the LLM calls it took.

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
                pl.lock_run(conn, self._run_id)
                q.insert_program(conn, self._run_id, program, now, owner=self._worker)
                if reply:
                    conn.execute(insert(REPLIES).values(program_id=program.id, text=reply))
                insert_calls(conn, self._run_id, program.id, calls, now)
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
        (island, features) when the cell is empty or it strictly beats the elite (on a tie
        the elite stays). A child's outcome is counted on its parent and ancestors for the
        selection policies; every ``migration_interval`` (``reset_interval``) evaluated
        children, the islands migrate (reset) in the same transaction.

        Returns:
            NEW_CELL, IMPROVED, or NOT_ADDED (lost to the elite, or failed).

        Raises:
            ValueError: If the program already has an evaluation.
        """
        ok = evaluation.ok
        status = ProgramStatus.EVALUATED if ok else ProgramStatus.FAILED
        reason = "" if ok else (evaluation.reason or f"evaluation {evaluation.status}")
        stored = replace(program, status=status, reason=reason)
        key = self.cell_of(evaluation.features)
        score = float(evaluation.score) if ok else None  # type: ignore[arg-type]
        now = time.time()
        try:
            with self._write() as conn:
                pl.lock_run(conn, self._run_id)
                q.upsert_program(conn, self._run_id, stored, now, owner=self._worker)
                conn.execute(
                    insert(EVALUATIONS).values(evaluation_values(program.id, evaluation, now))
                )
                placed = AddStatus.NOT_ADDED
                if score is not None:
                    placed = pl.place_in(
                        conn, self._run_id, program.island, key, program.id, score, self._maximize
                    )
                if program.parent_id is not None:
                    self._count_child(conn, program.parent_id, score)
                q.touch(conn, self._run_id, now)
        except IntegrityError as exc:
            raise ValueError(
                f"program: cannot store the evaluation of {program.id}: {exc.orig}"
            ) from None
        return placed

    def cell_of(self, features: dict[str, Any] | Any) -> str:
        """Return the cell key of these features: grid bins, or the nearest CVT centroid."""
        if not self._config.cvt_cells:
            return cell_key(features, self._config.features)
        return cvt_key(features, self._config.features, self._cvt())

    def sample_parent(self, island: int) -> Program | None:
        """Pick a parent of the island with the configured policy.

        Every policy picks among the island's cell elites, except the baselines: ``greedy``
        takes the best elite (the earliest on ties) and ``random`` any evaluated program of
        the island, elite or not (its elites while it has no evaluated program of its own).

        Returns:
            The chosen program, or None when the island has none yet.
        """
        policy = self._config.selection
        with self._read() as conn:
            chosen = None
            if policy == "greedy":
                chosen = q.best_elite(conn, self._run_id, island, self._maximize)
            elif policy == "random":
                chosen = q.random_evaluated(conn, self._run_id, island, self._rng)
            if chosen is None:
                elites = q.elites(conn, self._run_id, island, counters=policy in COUNTER_POLICIES)
                params = self._config.policy
                chosen = select_parent(policy, elites, self._maximize, self._rng, params)
            if chosen is None:
                return None
            row = conn.execute(select(PROGRAMS).where(PROGRAMS.c.id == chosen)).one()
        return program_from_row(row)

    def sample_inspirations(
        self, parent: Program, n: int, top_k: int = 1, ancestors: int = 0
    ) -> list[Program]:
        """Pick up to ``n`` programs of the parent's island, then its ``ancestors``, to show.

        The ``top_k`` best cell elites come first, then random elites of other cells. When
        the island has too few elites, its best other evaluated programs fill the rest.
        Then come up to ``ancestors`` of the parent's own ancestors, nearest first. The
        parent is never included and no program appears twice.
        """
        if n <= 0 and ancestors <= 0:
            return []
        ids: list[str] = []
        with self._read() as conn:
            if ancestors > 0 and parent.parent_id is not None:
                ids = pl.ancestor_ids(conn, parent.parent_id, ancestors)
            ids = self._peers(conn, parent, n, top_k, exclude=ids) + ids
            rows = conn.execute(select(PROGRAMS).where(PROGRAMS.c.id.in_(ids))).all()
        by_id = {row.id: program_from_row(row) for row in rows}
        return [by_id[pid] for pid in ids]

    def _peers(
        self, conn: Connection, parent: Program, n: int, top_k: int, exclude: list[str]
    ) -> list[str]:
        """Ids of the top-k and diverse elites beside ``parent`` (none in ``exclude``)."""
        if n <= 0:
            return []
        skip = set(exclude)
        elites = [e for e in q.elites(conn, self._run_id, parent.island) if e[0] not in skip]
        ids = pick_inspirations(
            elites, exclude=parent.id, n=n, top_k=top_k, maximize=self._maximize, rng=self._rng
        )
        if len(ids) < n:
            taken = [parent.id, *ids, *exclude]
            ids += q.best_others(
                conn, self._run_id, parent.island, taken, n - len(ids), self._maximize
            )
        return ids

    def join(self) -> str:
        """Register this instance as a live worker of the run; return its worker id.

        While its heartbeat (``heartbeat()``, at least every ``lease_s``) is fresh and, on
        this host, its process lives, no other worker claims the programs it owns.
        """
        with self._write() as conn:
            own.join(conn, self._run_id, self._worker, time.time())
        self._joined = True
        return self._worker

    def heartbeat(self) -> None:
        """Refresh this worker's lease."""
        with self._write() as conn:
            own.beat(conn, self._worker, time.time())

    def pending(self, include_own: bool = True) -> list[Program]:
        """Claim and return the programs still to evaluate whose owner is gone, in seq order.

        Pending means proposed, evaluating or interrupted. Programs owned by another live
        worker are left alone, so two workers never evaluate the same program.

        Args:
            include_own: Also return the pending programs this worker already owns.
        """
        now = time.time()
        with self._write() as conn:
            pl.lock_run(conn, self._run_id)
            live = own.live_workers(conn, self._run_id, now, self._config.lease_s)
            rows = own.claim(conn, self._run_id, self._worker, live, include_own)
        return [program_from_row(row) for row in rows]

    def evaluated_count(self) -> int:
        """Return the run's evaluated candidates (the initial program not counted)."""
        with self._read() as conn:
            return conn.execute(
                select(RUNS.c.evaluated).where(RUNS.c.id == self._run_id)
            ).scalar_one()

    def _count_child(self, conn: Connection, parent_id: str, score: float | None) -> None:
        """Selection counters, the run's evaluated count, and migration or reset when due."""
        config = self._config
        pl.record_outcome(conn, parent_id, score, self._maximize, config.policy.clade_depth)
        at = pl.count_evaluated(conn, self._run_id)
        if config.islands < 2:
            return
        if config.migration_interval and at % config.migration_interval == 0:
            pl.migrate_ring(conn, self._run_id, config.islands, config.migrants, at, self._maximize)
        if config.reset_interval and at % config.reset_interval == 0:
            pl.reset_weak_islands(conn, self._run_id, config.islands, at, self._maximize)

    def _cvt(self) -> list[list[float]]:
        """The run's CVT centroids: computed once from the seed, stored, then read back."""
        if self._centroids is None:
            with self._read() as conn:
                stored = pl.stored_centroids(conn, self._run_id)
            if stored is None:
                axes, config = len(self._config.features), self._config
                fresh = cvt_centroids(axes, config.cvt_cells, config.cvt_samples, self._seed)
                with self._write() as conn:
                    stored = pl.store_centroids(conn, self._run_id, fresh)
            self._centroids = stored
        return self._centroids

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
