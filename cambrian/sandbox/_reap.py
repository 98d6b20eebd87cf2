"""Supervising one run and killing what it leaves behind: its group, token-marked strays.

What a run leaves is killed by its pid namespace: bubblewrap's, or the one the
launcher's ``--outer`` mode makes for the rlimits backend; when the namespace's first
process dies, the kernel kills the rest. The token sweep is the backstop where no
namespace could be made: every sandboxed process inherits
``CAMBRIAN_SANDBOX_TOKEN=<token>``, and after each run we read ``/proc/<pid>/environ``
of every process born during the run and SIGKILL those carrying it. A process that
re-execs itself with a cleared environment escapes that sweep.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from cambrian.errors import SandboxError
from cambrian.sandbox._capture import OutputTail, pump
from cambrian.sandbox._env import TOKEN_VAR

_SWEEP_ROUNDS = 8
_DRAIN_GRACE_S = 0.5
_POLL_SLICE_S = 0.005


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


def supervise(
    proc: subprocess.Popen[bytes],
    tails: dict[int, OutputTail],
    deadline: float,
    token: str | None,
    before: frozenset[int],
) -> tuple[bool, float]:
    """Drain output until exit or deadline, kill the group and strays, reap the leader.

    Strays are found by their pid namespace (bubblewrap's, or the launcher's outer one);
    the ``token`` sweep is a backstop where no namespace could be made.

    Returns:
        Whether the leader exited on its own before the deadline, and its CPU seconds.
    """
    for fd in tails:
        os.set_blocking(fd, False)
    open_fds = set(tails)
    exited = _wait_exit(proc.pid, tails, open_fds, deadline)
    # The unreaped leader still holds the group id, so this cannot hit a recycled group.
    kill_group(proc.pid)
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except ChildProcessError:
        raise SandboxError(
            f"sandboxed process {proc.pid} was reaped by someone else (a waitpid(-1) elsewhere)"
        ) from None
    proc.returncode = os.waitstatus_to_exitcode(status)
    if token is not None:
        sweep(token, skip=before)
    pump(tails, deadline=time.monotonic() + _DRAIN_GRACE_S, open_fds=open_fds)
    return exited, usage.ru_utime + usage.ru_stime


def _wait_exit(pid: int, tails: dict[int, OutputTail], open_fds: set[int], deadline: float) -> bool:
    """Drain output until process ``pid`` exits (True) or the deadline passes (False)."""
    try:
        pidfd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        pidfd = None
    if pidfd is not None:
        try:
            return pump(tails, deadline=deadline, wake_fd=pidfd, open_fds=open_fds)
        finally:
            os.close(pidfd)
    while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        now = time.monotonic()
        if now >= deadline:
            return False
        if not open_fds:
            time.sleep(min(_POLL_SLICE_S, deadline - now))
        pump(tails, deadline=min(deadline, time.monotonic() + _POLL_SLICE_S), open_fds=open_fds)
    return True
