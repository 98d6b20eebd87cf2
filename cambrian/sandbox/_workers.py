"""Warm evaluator workers for the process backend (``evaluator.python = "FILE:FUNCTION"``).

A worker is one long-lived evaluator process in the outer tier (bubblewrap, or the
launcher's ``--outer`` namespaces), started in a slot folder of its own and running
``runner/cambrian_worker.py``, which loads the evaluator from the slot's own copy of
the task's files (never from a checkout). For each candidate the pool copies the
checkout into the slot (owned as ``run`` would own it), sends one request, waits for one answer line
within the evaluation's timeout, and copies the slot back. A worker is replaced after
``uses`` evaluations, after a timeout, a crash or an out-of-memory kill, and after any
evaluation whose candidate left a new importable module in the slot (the worker's own
``import`` could run it later). Candidate code runs through ``candidate.run`` in the
inner tier, as with a command evaluator, so it never touches the worker's memory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from cambrian.errors import SandboxError
from cambrian.sandbox._capture import OutputTail
from cambrian.sandbox._reap import kill_group
from cambrian.sandbox._tier import (
    Tree,
)
from cambrian.sandbox._warm import copy_back, fill_slot
from cambrian.sandbox._workdir import copy_tree
from cambrian.types import Limits, RunResult

_MAX_ANSWER = 16 * 1024 * 1024  # bytes of one answer line (the result bound is far below)
_OVERFLOW = "\0overflow"  # what _read_line returns for a longer one (no answer has a NUL)
_CLOSE_WAIT_S = 2.0
_MODULE_SUFFIXES = (".py", ".pyc", ".so")


@dataclasses.dataclass
class Worker:
    """One warm evaluator process and the slot folder its candidates are copied into."""

    proc: subprocess.Popen
    slot: str
    target: str
    uses: int = 0
    tail: OutputTail | None = None
    reader: threading.Thread | None = None
    mark: bytes = b""  # the line the worker writes to stderr just before its answer
    marked: threading.Event = dataclasses.field(default_factory=threading.Event)

    @property
    def work(self) -> str:
        """The slot's work dir (the candidate's checkout while it is evaluated)."""
        return os.path.join(self.slot, "w")

    @property
    def evaluator(self) -> str:
        """The slot's evaluator folder: the task's own files, loaded from, never a candidate's."""
        return os.path.join(self.slot, "e")


#: ``start(slot, target, limits, around) -> Popen``: the backend starts a worker process in
#: ``slot``, with what surrounds each of ``around`` hidden as around a work dir.
Starter = Callable[[str, str, Limits, tuple[str, ...]], subprocess.Popen]
#: ``inner(tree, limits) -> str``: the backend's inner-tier config for a tree in a slot.
InnerConfig = Callable[[Tree, Limits], str]


class WorkerPool:
    """Idle workers per target, started on demand by the backend.

    Args:
        start: Starts a worker process in a slot folder (stdin, stdout, stderr piped).
        inner: The inner-tier config for a candidate tree inside a slot.
        output_bytes: The stderr tail kept per evaluation.
        as_root: Hand slot copies to the candidate uid (as ``run`` does for work dirs).
    """

    def __init__(
        self, start: Starter, inner: InnerConfig, *, output_bytes: int, as_root: bool
    ) -> None:
        self._start, self._inner = start, inner
        self._output_bytes, self._as_root = output_bytes, as_root
        self._idle: list[Worker] = []
        self._busy: dict[int, Worker] = {}
        self._lock = threading.Lock()
        self._closed = False

    def call(
        self, target: str, tree: Tree, limits: Limits, env: Mapping[str, str] | None, uses: int
    ) -> RunResult:
        """Evaluate the checkout ``tree`` with ``target`` in a warm worker.

        ``uses``: evaluations a worker makes before it is replaced.

        Returns:
            A ``RunResult`` whose stdout is the result object's JSON line on success;
            a failed evaluator exits 1 with its traceback on stderr.
        """
        worker = self._take(target, limits, tree)
        try:
            result, keep = self._evaluate(worker, tree, limits, env)
        except BaseException:
            self._retire(worker)
            raise
        worker.uses += 1
        if keep and worker.uses < uses and worker.proc.poll() is None:
            self._give_back(worker)
        else:
            self._retire(worker)
        return result

    def _evaluate(
        self, worker: Worker, tree: Tree, limits: Limits, env: Mapping[str, str] | None
    ) -> tuple[RunResult, bool]:
        """One evaluation in ``worker``: its result, and whether the worker may go on."""
        start = time.monotonic()
        moved = tree.moved(tree.root, worker.work)  # the evaluator folder: evaluator-only
        inner = dataclasses.replace(moved, hidden=(*moved.hidden, worker.evaluator))
        worker.tail, worker.mark = OutputTail(self._output_bytes), os.urandom(8).hex().encode()
        worker.marked.clear()
        sticky = self._fill(tree, inner)
        before = _modules(worker.work)
        request = {"dir": worker.work, "env": {**(env or {}), "CAMBRIAN_WORKDIR": worker.work}}
        request["mark"] = worker.mark.decode()
        request["env"]["CAMBRIAN_RUN_CONFIG"] = self._inner(inner, limits)
        try:
            result = self._ask(worker, request, limits, start)
        finally:
            lost = copy_back(worker.work, tree.root, os.stat(tree.root), sticky)
        keep = result.returncode in (0, 1) and not result.timed_out and not lost
        keep = keep and _modules(worker.work) == before
        return (dataclasses.replace(result, lost=lost) if lost else result), keep

    def _fill(self, tree: Tree, inner: Tree) -> list[str]:
        """Copy the checkout into the slot as ``run`` would own it; the sticky folders."""
        if self._as_root:
            return fill_slot(tree, inner, as_root=True)
        copy_tree(tree.root, inner.root)
        return []

    def _take(self, target: str, limits: Limits, tree: Tree) -> Worker:
        """An idle worker for ``target``, or a new one set up from the checkout ``tree``."""
        with self._lock:
            if self._closed:
                raise SandboxError("this sandbox is closed; create a new one")
            dead = [w for w in self._idle if w.proc.poll() is not None]
            self._idle = [w for w in self._idle if w not in dead]
            found = next((w for w in self._idle if w.target == target), None)
            if found is not None:
                self._idle.remove(found)
                self._busy[id(found)] = found
        for worker in dead:
            _stop(worker)
        if found is not None:
            return found
        slot = tempfile.mkdtemp(prefix="cambrian-warm-")
        os.chmod(slot, 0o755)
        os.mkdir(os.path.join(slot, "w"))
        try:
            _evaluator_copy(tree, target, os.path.join(slot, "e"))
            proc = self._start(slot, target, limits, (*tree.around, tree.root))
        except BaseException:
            shutil.rmtree(slot, ignore_errors=True)
            raise
        worker = Worker(proc, slot, target)
        worker.reader = threading.Thread(target=_drain, args=(worker,), daemon=True)
        worker.reader.start()
        with self._lock:
            self._busy[id(worker)] = worker
            closed = self._closed
        if closed:  # close() ran while it started: it must not outlive close()
            kill_group(proc.pid)
        return worker

    def _ask(self, worker: Worker, request: dict, limits: Limits, start: float) -> RunResult:
        """Send one request and wait for its answer until the evaluation's deadline."""
        try:
            worker.proc.stdin.write((json.dumps(request) + "\n").encode())
            worker.proc.stdin.flush()
        except OSError:
            return self._ended(worker, start)
        line = _read_line(worker.proc.stdout, start + limits.timeout_s)
        if line is None or line is _OVERFLOW:  # past the deadline, or an endless answer
            kill_group(worker.proc.pid)
            worker.proc.wait()
            if line is None:
                return self._result(worker, -9, "", start, timed_out=True)
            too_big = f"the evaluator's answer was over {_MAX_ANSWER >> 20} MB"
            return self._result(worker, 1, "", start, error=too_big)
        if not line:
            return self._ended(worker, start)
        try:
            reply = json.loads(line)
            if reply.get("ok"):
                return self._result(worker, 0, reply["result"] + "\n", start)
            return self._result(worker, 1, "", start, error=str(reply.get("error", "")))
        except (ValueError, KeyError, TypeError, AttributeError):
            return self._result(worker, 1, "", start, error="the worker's answer was not JSON")

    def _ended(self, worker: Worker, start: float) -> RunResult:
        """The worker died, closed its answer channel or overflowed it mid-evaluation."""
        kill_group(worker.proc.pid)  # one that closed or flooded the channel may still run
        rc = worker.proc.wait()
        code = rc if rc >= 0 else 128 - rc
        return self._result(worker, code or 1, "", start, error=f"worker exited ({code})")

    def _result(
        self,
        worker: Worker,
        rc: int,
        stdout: str,
        start: float,
        *,
        timed_out: bool = False,
        error: str = "",
    ) -> RunResult:
        """The evaluation's ``RunResult``, the worker's stderr of it as the tail."""
        if worker.reader is not None and worker.proc.poll() is not None:
            worker.reader.join(_CLOSE_WAIT_S)
        elif rc in (0, 1) and not timed_out:  # its stderr up to the answer is all in the tail
            worker.marked.wait(_CLOSE_WAIT_S)
        err = worker.tail.text() if worker.tail is not None else ""
        err = err.replace(f"{worker.mark.decode()}\n", "") if worker.mark else err
        if error:
            err = f"{err}\n{error}" if err.strip() else error
        oom = not timed_out and ("MemoryError" in err or rc in (137, -9))
        took = time.monotonic() - start
        return RunResult(rc, stdout, err, timed_out=timed_out, oom_killed=oom, duration_s=took)

    def _give_back(self, worker: Worker) -> None:
        """Park a healthy worker for the next candidate."""
        with self._lock:
            self._busy.pop(id(worker), None)
            if not self._closed:
                self._idle.append(worker)
                return
        _stop(worker)

    def _retire(self, worker: Worker) -> None:
        """End a worker that must not evaluate again."""
        with self._lock:
            self._busy.pop(id(worker), None)
        _stop(worker)

    def close(self) -> None:
        """Stop every idle worker and kill busy ones (their evaluation ends as lost)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = list(self._busy.values())
        for worker in busy:
            kill_group(worker.proc.pid)
        for worker in idle:
            _stop(worker)


def _evaluator_copy(tree: Tree, target: str, folder: str) -> None:
    """Copy the task's own files (the target, protected and private ones) into ``folder``.

    The worker loads the evaluator from there, with that folder (not the checkout) on
    ``sys.path``: a module candidate code leaves in its checkout is never imported.
    """
    os.mkdir(folder, 0o700)
    names = {target.rpartition(":")[0]}
    names |= {os.path.relpath(p, tree.root) for p in (*tree.protected, *tree.private)}
    for rel in sorted(names):
        source, copy = os.path.join(tree.root, rel), os.path.join(folder, rel)
        if os.path.islink(source) or not os.path.exists(source):
            continue
        os.makedirs(os.path.dirname(copy), mode=0o700, exist_ok=True)
        if os.path.isdir(source):
            shutil.copytree(source, copy, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copyfile(source, copy)


def _read_line(stream: Any, deadline: float) -> str | None:
    """One line from ``stream`` before ``deadline``.

    None past the deadline, "" at the end of the stream, ``_OVERFLOW`` past
    ``_MAX_ANSWER`` bytes.
    """
    fd, buffer = stream.fileno(), bytearray()
    while b"\n" not in buffer:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return ""
        buffer += chunk
        if len(buffer) > _MAX_ANSWER:
            return _OVERFLOW
    return buffer.split(b"\n", 1)[0].decode("utf-8", errors="replace")


def _drain(worker: Worker) -> None:
    """Copy the worker's stderr into the current evaluation's tail until it closes.

    Seeing the evaluation's mark line sets ``worker.marked``: its stderr is all in.
    """
    fd, window = worker.proc.stderr.fileno(), b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return
        if not chunk:
            return
        if worker.tail is not None:
            worker.tail.feed(chunk)
        window += chunk
        if worker.mark and worker.mark in window:
            worker.marked.set()
        window = window[-64:]


def _modules(folder: str) -> frozenset[str]:
    """Module files and packages at the top of ``folder`` (what ``import`` would find)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return frozenset()
    found = {n for n in names if n.endswith(_MODULE_SUFFIXES)}
    found |= {n for n in names if os.path.isfile(os.path.join(folder, n, "__init__.py"))}
    return frozenset(found)


def _stop(worker: Worker) -> None:
    """Close the worker's stdin (it exits), kill it if it lingers, remove its slot."""
    try:
        worker.proc.stdin.close()
        worker.proc.wait(_CLOSE_WAIT_S)
    except (OSError, subprocess.TimeoutExpired):
        pass
    kill_group(worker.proc.pid)
    worker.proc.wait()
    for stream in (worker.proc.stdout, worker.proc.stderr):
        stream.close()
    shutil.rmtree(worker.slot, ignore_errors=True)
