"""Ending what candidate code left behind: kill loops, and a warm container's wipe.

Used by ``cambrian_run.py`` (next to this file) when a command ends, and by its
``--sweep`` entry between two evaluations of a warm container. Standard library only.
"""

from __future__ import annotations

import _signal as signal
import ctypes
import os
import stat
import time

import cambrian_inner as inner

KILL_ROUNDS = 1000
KILL_PAUSE_S = 0.002
IPC_RMID = 0
# /proc/sysvipc file -> the libc call that removes one of its objects by id.
_IPC = (("shm", "shmctl"), ("msg", "msgctl"), ("sem", "semctl"))
SCRATCH = ("/tmp", "/dev/shm")  # the writable places a warm container keeps


def descendants(root: int) -> list[int]:
    """Pids of every live process below ``root`` (the subreaper adopted any orphan)."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != b"Z":
            parents[int(name)] = int(fields[1])
    found: set[int] = set()
    grew = True
    while grew:
        new = {pid for pid, ppid in parents.items() if ppid in found or ppid == root} - found
        found |= new
        grew = bool(new)
    return sorted(found)


def _kill(pid: int) -> bool:
    """SIGKILL ``pid``; False when we may not signal it (it runs as another uid)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except PermissionError:
        return False
    except ProcessLookupError:
        pass
    return True


def kill_all(cfg: dict, targets, *, repeat: bool) -> None:
    """SIGKILL the pids ``targets()`` gives, while any is left when ``repeat``.

    A pid we may not signal is killed by a helper that first drops to the inner tier's
    uid: the evaluator tier needs no CAP_KILL, and that uid reaches only its own processes.
    """
    for _ in range(KILL_ROUNDS):
        pids = [pid for pid in targets() if pid != os.getpid()]
        if not pids:
            return
        denied = [pid for pid in pids if not _kill(pid)]
        if denied:
            _helper_kill(cfg, targets if repeat else (lambda pids=denied: pids), repeat=repeat)
        if not repeat:
            return
        time.sleep(KILL_PAUSE_S)


def _helper_kill(cfg: dict, targets, *, repeat: bool) -> None:
    """Run the kill loop in a child that has the inner tier's uid."""
    helper = os.fork()
    if helper == 0:
        try:
            _drop_descriptors()  # a process of that uid could open them through /proc
            inner.become(cfg)
            inner.prctl(inner.PR_SET_DUMPABLE, 0)  # and /proc/<helper> stays closed to it
            mine = os.getpid()
            for _ in range(KILL_ROUNDS if repeat else 1):
                pids = [pid for pid in targets() if pid != mine]
                if not pids:
                    break
                for pid in pids:
                    _kill(pid)
                time.sleep(KILL_PAUSE_S)
        finally:
            os._exit(0)
    try:
        os.waitpid(helper, 0)
    except ChildProcessError:
        pass


def _drop_descriptors() -> None:
    """Point 0, 1 and 2 at /dev/null and close every other descriptor."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))


def live_of(uid: int, me: int) -> list[int]:
    """Live processes (zombies aside) whose real uid is ``uid``, other than ``me``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as handle:
                fields = dict(line.split(b":", 1) for line in handle.read().splitlines())
        except (OSError, ValueError):
            continue
        if fields.get(b"State", b"").split()[:1] != [b"Z"]:
            if int(fields.get(b"Uid", b"-1").split()[0]) == uid:
                found.append(int(name))
    return found


def sweep(uid: int, spare: str) -> int:
    """Kill every process of ``uid``, then every other one but pid 1 and ``spare``; wipe.

    A warm container's wipe between two evaluations (run as root there): ``uid``'s
    processes go first, through a helper with that uid (``kill(-1)`` reaches them all
    and nothing else); the root processes left are the evaluator's, except the
    container's idle process, named ``spare`` (a name only root processes can bear).
    Then /tmp, /dev/shm and System V IPC are emptied; 1 when something could not go
    (the container is then discarded), else 0.
    """
    helper = os.fork()
    if helper == 0:
        try:
            inner.become({"uid": uid})
            # kill(-1) succeeds while any process exists, so look whether uid's are left.
            for _ in range(KILL_ROUNDS):
                os.kill(-1, signal.SIGKILL)
                if not live_of(uid, os.getpid()):
                    break
                time.sleep(KILL_PAUSE_S)
            wipe_scratch()  # as uid: root here lacks CAP_FOWNER (sticky /tmp) and IPC_OWNER
        finally:
            os._exit(0)
    os.waitpid(helper, 0)
    me = os.getpid()

    def others() -> list[int]:
        spared, parents = {os.getppid()}, {}  # the shell that runs this wipe
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) in (1, me):
                continue
            try:
                with open(f"/proc/{name}/cmdline", "rb") as handle:
                    if spare.encode() in handle.read().split(b"\0"):
                        spared.add(int(name))
                with open(f"/proc/{name}/stat", "rb") as handle:
                    parents[int(name)] = int(handle.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
        # The idle process's own children (its sleep) are spared with it.
        return [pid for pid, ppid in parents.items() if pid not in spared and ppid not in spared]

    kill_all({}, others, repeat=True)
    return 1 if wipe_scratch() else 0


def wipe_scratch() -> int:
    """Empty the scratch folders and remove System V IPC; how many things are left."""
    return sum(wipe_folder(folder) for folder in SCRATCH) + wipe_ipc()


def wipe_ipc() -> int:
    """Remove every System V shared memory segment, message queue and semaphore set.

    A warm container has an IPC namespace of its own (Docker's default), so whatever is
    in it was left by an earlier evaluation. Returns how many objects could not go.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    left = 0
    for kind, call in _IPC:
        try:
            with open(f"/proc/sysvipc/{kind}", "rb") as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) < 2 or not fields[1].isdigit():
                continue
            args = (int(fields[1]), 0, IPC_RMID) if kind == "sem" else (int(fields[1]), IPC_RMID)
            if getattr(libc, call)(*args, None) != 0:
                left += 1
    return left


def wipe_folder(path: str) -> int:
    """Delete everything inside ``path`` but mount points; how many entries are left.

    Never follows a link and never enters another file system (the slot dir a warm
    container has bound below /tmp is the host's, and is refilled for each evaluation).
    """
    try:
        device = os.lstat(path).st_dev
        names = os.listdir(path)
    except OSError:
        return 0
    left = 0
    for name in names:
        target = os.path.join(path, name)
        try:
            info = os.lstat(target)
            if info.st_dev != device:
                continue
            if stat.S_ISDIR(info.st_mode):
                left += wipe_folder(target)
                os.rmdir(target)
            else:
                os.unlink(target)
        except OSError:
            left += 1
    return left
