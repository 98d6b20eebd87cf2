"""Run one command in the sandbox's inner tier, where candidate code runs.

cambrian's sandboxes name this file in ``$CAMBRIAN_RUN``; an evaluator runs
``$CAMBRIAN_RUN python solve.py``. The command gets:

- its own uid (``uid`` in the config; never the evaluator's when cambrian can switch),
  no capabilities, no new privileges, and RLIMIT_NPROC (``pids``);
- where the kernel allows it, its own user, pid, mount, IPC and (without
  ``network``) network namespaces: the ``masks`` are covered by empty tmpfs mounts,
  ``keep`` bound back (the work dir, the interpreter), ``readonly`` bound read-only and
  ``hide`` covered (private files, the result dir), with a fresh ``/proc`` when allowed;
- an environment rebuilt from a short allowlist (no ``CAMBRIAN_RESULT``, nothing else);
- fresh pipes for stdin, stdout and stderr: this launcher copies them, so the command
  never holds one of the evaluator's file descriptors. Its stdout goes to our stderr
  when our stdout is the stream cambrian reads the result from (``CAMBRIAN_STDOUT``),
  and any line of it that still lands there is prefixed with ``[candidate] ``.

When the command exits, everything it started is killed (its pid namespace ends, or,
without one, every process left below this launcher, a child subreaper) before this
launcher exits with the command's status (128 + N for signal N). SIGTERM, SIGINT or
SIGHUP to the launcher does the same; SIGKILL to it kills the command through the
parent-death signal.

``--outer`` is the process backend's entry for the evaluator itself: a pid namespace
(and a fresh ``/proc``) for the whole evaluation when the kernel allows it, else a
subreaper that kills what is left when the evaluator exits.

``--sweep UID NAME`` is a warm container's wipe between evaluations. Next to this file:
the forked child's side (namespaces, credentials, the view) is ``cambrian_inner.py``,
its seccomp filter ``cambrian_filter.py``, the kill loops and the wipe ``cambrian_reap.py``.
Standard library only: it runs under whatever Python the sandbox has.
"""

from __future__ import annotations

# C modules only: this starts for every candidate run (signal pulls in enum).
import _signal as signal
import os
import select
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves it out
import cambrian_inner as inner  # noqa: E402
import cambrian_reap as reap  # noqa: E402

MARK = b"[candidate] "
CHUNK = 65536
DRAIN_S = 2.0
_stop: list[int] = []  # the signal that asked us to stop, if any


def _same_stream(fd: int) -> bool:
    """Whether ``fd`` is the stream cambrian reads the evaluator's result from."""
    wanted = os.environ.get(inner.STDOUT_VAR, "")
    try:
        return bool(wanted) and os.readlink(f"/proc/self/fd/{fd}") == wanted
    except OSError:
        return False


def _write_all(fd: int, data: bytes) -> None:
    """Write ``data`` to ``fd``; a reader that went away is not our problem."""
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        pass


def _pump(cfg: dict, child: int, feed: int, outputs: dict[int, _Sink], wake: int) -> int:
    """Copy stdin to the command and its output to ours until it ends; its wait status."""
    try:
        pidfd = os.pidfd_open(child)
    except (AttributeError, OSError):
        pidfd = None
    poller = select.poll()
    for fd in (*outputs, wake):
        poller.register(fd, select.POLLIN)
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    stdin_open = _watch_stdin(poller)
    while True:
        if _stop:
            reap.kill_all(cfg, lambda: [child], repeat=False)
        done = _reap(child)
        if done is not None:
            _close(pidfd)
            return done
        events = poller.poll(100 if pidfd is None or _stop else -1)
        for fd, _ in events:
            if fd == wake:
                _read_all(wake)
            elif fd == 0 and stdin_open:
                stdin_open = _copy_stdin(poller, feed)
            elif fd in outputs and not _copy(fd, outputs[fd]):
                poller.unregister(fd)


def _read_all(fd: int) -> None:
    """Empty a non-blocking pipe."""
    try:
        while os.read(fd, CHUNK):
            pass
    except OSError:
        pass


def _watch_stdin(poller: select.poll) -> bool:
    """Register our stdin when it can be polled; whether it is being copied."""
    try:
        poller.register(0, select.POLLIN)
        return True
    except (OSError, ValueError):
        return False


def _copy_stdin(poller: select.poll, feed: int) -> bool:
    """Move one chunk of our stdin to the command; False once stdin ended."""
    try:
        data = os.read(0, CHUNK)
    except OSError:
        data = b""
    if data:
        _write_all(feed, data)
        return True
    poller.unregister(0)
    try:
        os.close(feed)
    except OSError:
        pass
    return False


class _Sink:
    """Where one of the command's outputs goes; lines are marked in cambrian's stream."""

    def __init__(self, fd: int, marked: bool) -> None:
        self.fd, self.marked, self.fresh = fd, marked, True

    def write(self, data: bytes) -> None:
        """Write ``data``, each line prefixed with ``MARK`` when marked."""
        if self.marked:
            body = data.replace(b"\n", b"\n" + MARK)
            if data.endswith(b"\n"):
                body = body[: -len(MARK)]
            data = (MARK if self.fresh else b"") + body
            self.fresh = data.endswith(b"\n")
        _write_all(self.fd, data)


def _sinks(out_r: int, err_r: int) -> dict[int, _Sink]:
    """Route the command's stdout and stderr so neither can pose as the evaluator's result.

    Stdout that would land in cambrian's result stream goes to stderr instead; whatever
    still lands there (the evaluator merged its streams) has every line marked.
    """
    out_is, err_is = _same_stream(1), _same_stream(2)
    stdout = _Sink(2, err_is) if out_is else _Sink(1, False)
    return {out_r: stdout, err_r: _Sink(2, err_is)}


def _copy(src: int, sink: _Sink) -> bool:
    """Move one chunk of the command's output; False at EOF."""
    try:
        data = os.read(src, CHUNK)
    except BlockingIOError:
        return True
    except OSError:
        return False
    if not data:
        return False
    sink.write(data)
    return True


def _reap(child: int) -> int | None:
    """Reap every finished process adopted by us; the child's status once it ended."""
    status = None
    while True:
        try:
            pid, raw = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if pid == 0:
            return status
        if pid == child:
            status = raw


def _close(fd: int | None) -> None:
    """Close ``fd`` if there is one."""
    if fd is not None:
        os.close(fd)


def _end_inner(cfg: dict) -> None:
    """Kill every process left below us, then reap them."""
    me = os.getpid()
    reap.kill_all(cfg, lambda: reap.descendants(me), repeat=True)
    _reap(-1)


def _drain(outputs: dict[int, _Sink]) -> None:
    """Copy the output still in the pipes (every writer is dead now)."""
    poller = select.poll()
    for fd in outputs:
        poller.register(fd, select.POLLIN)
    live = set(outputs)
    until = time.monotonic() + DRAIN_S
    while live and time.monotonic() < until:
        for fd, _ in poller.poll(100):
            if fd in live and not _copy(fd, outputs[fd]):
                live.discard(fd)
                poller.unregister(fd)


def _on_signal(signum: int, _frame: object) -> None:
    """Remember a stop request; the pump loop kills the command."""
    _stop.append(signum)


def run(argv: list[str]) -> int:
    """Run ``argv`` in the inner tier; its exit status."""
    cfg = {**inner.config(), "cwd": os.getcwd()}
    in_r, in_w = os.pipe2(os.O_CLOEXEC)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    inner.prctl(inner.PR_SET_CHILD_SUBREAPER, 1)
    me = os.getpid()
    child = os.fork()
    if child == 0:
        inner.child(cfg, argv, (in_r, out_w, err_w), me)
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    signal.set_wakeup_fd(wake_w)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    outputs = _sinks(out_r, err_r)
    for fd in outputs:
        os.set_blocking(fd, False)
    status = _pump(cfg, child, in_w, outputs, wake_r)
    _end_inner(cfg)
    _drain(outputs)
    if _stop:
        return 128 + _stop[0]
    return inner.exit_code(status)


# --- the outer tier's entry (process backend) -------------------------------------------
def _outer_init(argv: list[str]) -> None:
    """Pid 1 of the evaluation: run the evaluator as pid 2, reap, end with it."""
    evaluator = os.fork()
    if evaluator == 0:
        inner.parent_death(0)
        os.execv(argv[0], argv)
    while True:  # pid 1 ignores its own namespace's signals, so it must not be the shell
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(inner.FAILED)
        if pid == evaluator:
            os._exit(inner.exit_code(status))


def outer(argv: list[str]) -> int:
    """Run the evaluator ``argv`` in a pid namespace of its own (or under a subreaper).

    It ends with the controller that started it (a parent-death signal, as bubblewrap's
    ``--die-with-parent``): a controller killed by SIGKILL leaves nothing running.
    """
    inner.parent_death(os.getppid())
    here = os.readlink("/proc/self/fd/1") if os.path.exists("/proc/self/fd/1") else ""
    os.environ.setdefault(inner.STDOUT_VAR, here)
    flags = inner.CLONE_NEWPID | inner.CLONE_NEWNS
    spaced = inner.unshare(flags) if os.geteuid() == 0 else inner.user_namespace(flags)
    if not spaced:
        inner.prctl(inner.PR_SET_CHILD_SUBREAPER, 1)
    me = os.getpid()
    child = os.fork()
    if child == 0:
        try:
            if not spaced:
                inner.parent_death(me)
                os.execv(argv[0], argv)
            inner.parent_death(0)  # pid 1 of a new namespace sees no parent
            inner.mount(None, "/", None, inner.MS_REC | inner.MS_PRIVATE)
            inner.mount("proc", "/proc", "proc", inner.MS_NOSUID | inner.MS_NODEV | inner.MS_NOEXEC)
            _outer_init(argv)
        except BaseException as exc:  # noqa: BLE001 - a forked child must never return
            os.write(2, f"cambrian_run --outer: {exc}\n".encode())
        os._exit(inner.FAILED)
    signal.signal(signal.SIGTERM, _on_signal)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    if not spaced:
        reap.kill_all({}, lambda: reap.descendants(me), repeat=True)
        _reap(-1)
    return inner.exit_code(status)


def main(argv: list[str]) -> int:
    """``cambrian_run.py [--outer] [--] COMMAND [ARG...]`` (or ``--sweep UID NAME``)."""
    if len(argv) == 3 and argv[0] == "--sweep":
        return reap.sweep(int(argv[1]), argv[2])
    is_outer = bool(argv) and argv[0] == "--outer"
    argv = argv[1:] if is_outer else argv
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("usage: $CAMBRIAN_RUN COMMAND [ARG...]", file=sys.stderr)
        return 2
    try:
        return outer(argv) if is_outer else run(argv)
    except inner.LaunchError as exc:
        print(f"cambrian_run: {exc}", file=sys.stderr)
        return inner.FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
