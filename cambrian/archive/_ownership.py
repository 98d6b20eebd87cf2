"""Which worker owns which in-flight program: worker rows with a heartbeat, and claims.

A program in flight (proposed, evaluating, interrupted) belongs to the worker that made
or claimed it. Another worker may take it over only once that owner is gone: its row is
missing, its heartbeat is older than the lease, or it ran on this host and its process no
longer exists (so a resumed run after SIGKILL never waits for the lease).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable

from sqlalchemy import Connection, delete, insert, select, update

from cambrian.archive._queries import PROGRAMS
from cambrian.archive._schema import WorkerRow
from cambrian.types import ProgramStatus

WORKERS = WorkerRow.__table__
PENDING = (ProgramStatus.PROPOSED, ProgramStatus.EVALUATING, ProgramStatus.INTERRUPTED)


def host_name() -> str:
    """This machine's name, as stored in worker rows."""
    return socket.gethostname()[:200]


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def join(conn: Connection, run_id: str, worker: str, now: float) -> None:
    """Insert (or refresh) this worker's row."""
    conn.execute(delete(WORKERS).where(WORKERS.c.id == worker))
    values = {"run_id": run_id, "host": host_name(), "pid": os.getpid()}
    conn.execute(insert(WORKERS).values(id=worker, started_at=now, heartbeat_at=now, **values))


def beat(conn: Connection, worker: str, now: float) -> None:
    """Refresh this worker's heartbeat."""
    conn.execute(update(WORKERS).where(WORKERS.c.id == worker).values(heartbeat_at=now))


def leave(conn: Connection, worker: str) -> None:
    """Remove this worker's row: its remaining programs become claimable at once."""
    conn.execute(delete(WORKERS).where(WORKERS.c.id == worker))


def live_workers(conn: Connection, run_id: str, now: float, lease_s: float) -> set[str]:
    """Ids of the run's workers that are still alive (fresh heartbeat, process present)."""
    here = host_name()
    live = set()
    for row in conn.execute(select(WORKERS).where(WORKERS.c.run_id == run_id)):
        fresh = now - row.heartbeat_at <= lease_s
        if fresh and (row.host != here or pid_alive(row.pid)):
            live.add(row.id)
    return live


def claim(
    conn: Connection, run_id: str, worker: str, live: Iterable[str], include_own: bool
) -> list:
    """Take over the run's pending programs whose owner is gone; return their rows in seq order.

    Args:
        conn: A write transaction holding the run lock.
        run_id: The run.
        worker: The claiming worker.
        live: Ids of live workers (``worker`` itself counts as live).
        include_own: Also return the programs ``worker`` already owns.
    """
    keep = set(live) - {worker}
    query = select(PROGRAMS).where(
        PROGRAMS.c.run_id == run_id, PROGRAMS.c.status.in_([str(s) for s in PENDING])
    )
    rows = []
    for row in conn.execute(query.order_by(PROGRAMS.c.seq)).all():
        if row.owner in keep or (row.owner == worker and not include_own):
            continue
        if row.owner != worker:
            taken = update(PROGRAMS).where(PROGRAMS.c.id == row.id).values(owner=worker)
            conn.execute(taken)
        rows.append(row)
    return rows
