"""Read-only queries of ``SqlArchive``: programs, evaluations, best, stats (no writes)."""

from __future__ import annotations

import json
import string
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, select

from cambrian.archive import _queries as q
from cambrian.archive._model_stats import model_stats
from cambrian.archive._pareto import objective_vector, pareto_front
from cambrian.archive._queries import CELLS, EVALUATIONS, PROGRAMS
from cambrian.archive._rows import evaluation_from_row, program_from_row
from cambrian.config import ArchiveConfig
from cambrian.types import Evaluation, Program, ProgramStatus

_REFUSED = (ProgramStatus.REJECTED, ProgramStatus.FAILED)


class ArchiveReads:
    """The read side of ``SqlArchive``; subclasses provide ``_read()`` and the attributes."""

    _config: ArchiveConfig
    _run_id: str
    _maximize: bool

    def _read(self) -> AbstractContextManager[Connection]:
        """Yield a connection for reads."""
        raise NotImplementedError

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

    def island_elites(self, island: int, limit: int = 32) -> list[Program]:
        """Return up to ``limit`` cell elites of ``island``, best first."""
        query = (
            select(PROGRAMS)
            .join(CELLS, CELLS.c.program_id == PROGRAMS.c.id)
            .where(CELLS.c.run_id == self._run_id, CELLS.c.island == island)
            .order_by(CELLS.c.score.desc() if self._maximize else CELLS.c.score.asc())
            .limit(limit)
        )
        with self._read() as conn:
            return [program_from_row(row) for row in conn.execute(query)]

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

    def stats(self) -> dict[str, Any]:
        """Return counts by status, evaluations, best score, LLM usage, elapsed time, cells."""
        best = self.best()
        with self._read() as conn:
            out = q.counts(conn, self._run_id)
        out["islands"] = self._config.islands
        out["best_score"] = None if best is None else best[1].score
        out["best_program"] = None if best is None else best[0].id
        return out

    def model_stats(self) -> dict[str, dict[str, Any]]:
        """Per model: calls, errors, tokens, cost, and how often its children improved."""
        with self._read() as conn:
            return model_stats(conn, self._run_id, self._maximize)

    # -- private helpers ---------------------------------------------------------------

    def pareto(self) -> list[tuple[Program, Evaluation]]:
        """Return the run's non-dominated ok programs over ``ArchiveConfig.objectives``.

        With no objectives configured, the score alone (in the run's direction) is used.
        Programs missing an objective metric are left out. Ordered by program seq.
        """
        direction = "maximize" if self._maximize else "minimize"
        objectives = dict(self._config.objectives) or {"score": direction}
        query = (
            select(EVALUATIONS.c.program_id, EVALUATIONS.c.score, EVALUATIONS.c.metrics)
            .join(PROGRAMS, PROGRAMS.c.id == EVALUATIONS.c.program_id)
            .where(PROGRAMS.c.run_id == self._run_id, EVALUATIONS.c.status == "ok")
            .order_by(PROGRAMS.c.seq)
        )
        points = []
        with self._read() as conn:
            for pid, score, metrics in conn.execute(query):
                vector = objective_vector(score, json.loads(metrics), objectives)
                if vector is not None:
                    points.append((pid, vector))
        return [(self.get(pid), self.evaluation(pid)) for pid in pareto_front(points)]
