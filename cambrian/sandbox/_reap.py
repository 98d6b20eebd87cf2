"""Killing what a run leaves behind: its process group, and token-marked strays.

Every sandboxed process inherits ``CAMBRIAN_SANDBOX_TOKEN=<token>``. A daemon that
double-forks and calls ``setsid`` leaves the process group, but not its environment, so
after each run we read ``/proc/<pid>/environ`` of every process born during the run and
SIGKILL those carrying the token. This is best effort: a process that re-execs itself
with a cleared environment escapes the sweep (bubblewrap's pid namespace still gets it).
"""

from __future__ import annotations

import os
import signal

from cambrian.sandbox._env import TOKEN_VAR

_SWEEP_ROUNDS = 8


def kill_group(pgid: int) -> None:
    """SIGKILL the process group ``pgid``; a group that is already gone is fine."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def pid_snapshot() -> frozenset[int]:
    """The pids alive now (so the sweep reads only processes born after it)."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return frozenset()
    return frozenset(int(n) for n in names if n.isdigit())


def _kill_if_marked(pid: int, marker: bytes) -> bool:
    """SIGKILL ``pid`` if its environment holds ``marker``; True if it was signalled."""
    try:
        pidfd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        pidfd = None
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            environ = handle.read()
        if marker not in environ:
            return False
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
        return True
    except OSError:
        return False
    finally:
        if pidfd is not None:
            os.close(pidfd)


def sweep(token: str, *, skip: frozenset[int] = frozenset()) -> int:
    """SIGKILL every process whose environment carries this run's token.

    Args:
        token: The run's ``CAMBRIAN_SANDBOX_TOKEN`` value.
        skip: Pids alive before the run started (they cannot carry a fresh token).

    Returns:
        How many processes were signalled.
    """
    marker = f"{TOKEN_VAR}={token}".encode()
    own = os.getpid()
    signalled: set[int] = set()
    for _ in range(_SWEEP_ROUNDS):
        fresh = [p for p in pid_snapshot() if p not in skip and p not in signalled and p != own]
        hits = {pid for pid in fresh if _kill_if_marked(pid, marker)}
        if not hits:
            break
        signalled |= hits
    return len(signalled)
