"""``ProcessSandbox``: the evaluator as a local process, under bubblewrap or rlimits only.

Every run gets its own session and process group, a scrubbed environment, rlimits, a
wall-clock kill of the whole group, and bounded output capture. With bubblewrap it also
gets a read-only system, a private /tmp, hidden home directories, no network and a pid
namespace. Without it ("rlimits" isolation) the evaluator has NO filesystem or network
isolation (protected files are only chmod-ed read-only), but its own pid namespace.

Candidate code runs in the inner tier (``$CAMBRIAN_RUN``, see ``_tier``): as root, as
uid 65534 in its own pid and mount namespaces. Not root and without bubblewrap there is
no second uid; such a sandbox is refused unless ``sandbox.allow_unisolated`` is set.

``oom_killed`` is best effort: it is set when the command died of SIGKILL (or exited with
status 137) that neither the wall-clock nor the CPU-time limit explains, or when its
stderr tail mentions ``MemoryError``, ``std::bad_alloc`` or ``Cannot allocate memory``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cambrian.config import SandboxConfig
from cambrian.errors import SandboxError
from cambrian.sandbox._bwrap import bwrap_argv, find_bwrap, interpreter_dirs, probe
from cambrian.sandbox._capture import OutputTail
from cambrian.sandbox._env import new_token, sandbox_env
from cambrian.sandbox._gpu import gpu_env, gpu_slots
from cambrian.sandbox._limits import SHELL, rlimit_values, running_as_root
from cambrian.sandbox._protect import make_readonly, resolve_readonly, restore_modes
from cambrian.sandbox._reap import kill_group, pid_snapshot, supervise, sweep
from cambrian.sandbox._tier import (
    CANDIDATE_UID,
    MOUNT_PATH,
    RUNNER_DIR,
    Tree,
    check_results,
    describe_process,
    inner_config,
    launcher_argv,
    mask_dirs,
    outer_line,
    protect_controller,
    runner_env,
)
from cambrian.sandbox._workdir import grant_tree, remove_tree
from cambrian.sandbox._worker_start import start_worker
from cambrian.sandbox._workers import WorkerPool
from cambrian.types import Limits, RunResult

ISOLATIONS = ("auto", "bwrap", "rlimits")
_OOM_MARKERS = ("MemoryError", "std::bad_alloc", "Cannot allocate memory")
# A shell (or bwrap) reports a child killed by signal N as exit status 128 + N.
_SIGKILLED = (-signal.SIGKILL, 128 + signal.SIGKILL)
_SIGXCPU = (-signal.SIGXCPU, 128 + signal.SIGXCPU)
_UNISOLATED = (
    "candidate code would run as your own uid beside the evaluator ({why}): install "
    "bubblewrap or Docker, run cambrian as root, or set sandbox.allow_unisolated = true"
)


class ProcessSandbox:
    """Runs commands as local processes, isolated by bubblewrap when it works here.

    Args:
        config: The ``[sandbox]`` config section (used by ``describe``; per-run limits
            come from the ``Limits`` given to ``run``).
        run_id: The evolution run's id, used to name temporary directories.
        isolation: ``"auto"`` (bubblewrap if installed and working, else rlimits),
            ``"bwrap"`` (fail with ``SandboxError`` if unusable) or ``"rlimits"``.

    Raises:
        ValueError: ``isolation`` is not one of the three names.
        SandboxError: ``isolation="bwrap"`` and bwrap is not installed, ``"rlimits"``
            without root and without ``sandbox.allow_unisolated``, or GPUs are asked
            for (``sandbox.gpus_per_eval``) where there are none.
    """

    name = "process"

    def __init__(self, config: SandboxConfig, *, run_id: str = "", isolation: str = "auto"):
        if isolation not in ISOLATIONS:
            raise ValueError(f"isolation must be one of {', '.join(ISOLATIONS)}; got {isolation!r}")
        self.config = config
        self.run_id = run_id
        self._requested = isolation
        self._bwrap = find_bwrap() if isolation != "rlimits" else None
        if isolation == "bwrap" and self._bwrap is None:
            raise SandboxError(
                "isolation 'bwrap' requested but bwrap is not installed: "
                "install bubblewrap or use isolation 'rlimits'"
            )
        self._mode: str | None = None
        if isolation == "rlimits":
            self._mode = self._allowed("rlimits", "isolation 'rlimits' was asked for")
        self._gpus = gpu_slots(config)
        self._lock = threading.Lock()
        self._live: dict[int, str] = {}
        self._closed = False
        self._workers: WorkerPool | None = None
        #: Folders whose surroundings stay hidden like a work dir's (the task folder).
        self.around: tuple[str, ...] = ()
        self._pycache: str | None = None

    @property
    def isolation(self) -> str:
        """``"bwrap"`` or ``"rlimits"``: the isolation in use (probes bwrap on first use)."""
        if self._mode is None:
            reason = probe(self._bwrap) if self._bwrap else "bwrap is not installed"
            if reason is not None and self._requested == "bwrap":
                raise SandboxError(f"isolation 'bwrap' is unusable here: {reason}")
            self._mode = "bwrap" if reason is None else self._allowed("rlimits", reason)
        return self._mode

    def _allowed(self, mode: str, why: str) -> str:
        """``mode``, unless it is rlimits without a uid to switch to and not opted into."""
        if mode == "rlimits" and not running_as_root() and not self.config.allow_unisolated:
            raise SandboxError(_UNISOLATED.format(why=why))
        return mode

    def run(
        self,
        command: str,
        *,
        workdir: Path,
        limits: Limits,
        env: Mapping[str, str] | None = None,
        readonly: Sequence[str] = (),
        private: Sequence[str] = (),
        result_dir: Path | None = None,
    ) -> RunResult:
        """Run ``command`` (the evaluator) through ``/bin/sh -c`` in ``workdir``.

        Args:
            command: A shell line.
            workdir: Existing directory; the command's cwd and ``$HOME``.
            limits: Wall-clock, memory, pids, output and file-size limits, and network.
            env: Variables added to the scrubbed allowlist (the evaluator's only).
            readonly: Paths relative to ``workdir`` the command must not modify.
            private: Paths relative to ``workdir`` that candidate code must not see.
            result_dir: A folder outside ``workdir`` the evaluator may write and
                candidate code cannot reach.

        Returns:
            The exit status, output tails and kill flags; a crash is a normal result.

        Raises:
            ValueError: Empty command, non-positive timeout, a bad ``readonly`` or
                ``private`` entry, or a ``result_dir`` that is missing or inside ``workdir``.
            SandboxError: The work dir is missing, bwrap is broken, or the sandbox is closed.
        """
        if not command.strip():
            raise ValueError("command must be a non-empty shell line")
        tree = self._tree(workdir, limits, readonly, private, result_dir)
        mode = self.isolation
        with gpu_env(self._gpus, env) as env:
            return self._run_isolated(mode, command, tree, limits, env)

    def _tree(
        self,
        workdir: Path,
        limits: Limits,
        readonly: Sequence[str],
        private: Sequence[str],
        result_dir: Path | None = None,
    ) -> Tree:
        """Check one run's arguments; its paths, absolute. Makes the controller non-dumpable."""
        if not limits.timeout_s > 0:
            raise ValueError(f"limits.timeout_s must be positive, got {limits.timeout_s!r}")
        if self._closed:
            raise SandboxError("this process sandbox is closed; create a new one")
        root = os.path.realpath(workdir)
        if not os.path.isdir(root):
            raise SandboxError(f"work dir {workdir} does not exist or is not a directory")
        protect_controller()
        return Tree(
            root,
            tuple(resolve_readonly(Path(root), readonly)),
            tuple(resolve_readonly(Path(root), private, what="private")),
            check_results(result_dir, root),
            self.around,
            (self.pycache(),),
        )

    def pycache(self) -> str:
        """The evaluator's own bytecode cache, hidden from candidates.

        Never the work dir, where candidate code could plant a ``.pyc``.
        """
        with self._lock:
            if self._pycache is None:
                self._pycache = tempfile.mkdtemp(prefix=f"cambrian-pycache-{self.run_id}-")
            return self._pycache

    def call(
        self,
        target: str,
        *,
        workdir: Path,
        limits: Limits,
        env: Mapping[str, str] | None = None,
        readonly: Sequence[str] = (),
        private: Sequence[str] = (),
        uses: int = 100,
    ) -> RunResult:
        """Evaluate the checkout in ``workdir`` with ``target`` (``FILE:FUNCTION``), warm.

        A worker of the outer tier, loaded once, serves up to ``uses`` candidates (see
        ``_workers``); the result object comes back as stdout's last line.
        """
        tree = self._tree(workdir, limits, readonly, private)
        self.isolation  # noqa: B018 - probe (and refuse) before the first worker starts
        with self._lock:
            if self._workers is None:
                bwrap = (self._bwrap or "bwrap") if self.isolation == "bwrap" else None
                self._workers = WorkerPool(
                    lambda slot, target, lim, around: start_worker(
                        slot, target, lim, around, bwrap=bwrap
                    ),
                    lambda inner, lim: self._inner(inner, lim, new_token()),
                    output_bytes=limits.output_bytes,
                    as_root=running_as_root(),
                )
        with gpu_env(self._gpus, env) as env:
            return self._workers.call(target, tree, limits, env, uses)

    def _run_isolated(
        self, mode: str, command: str, tree: Tree, limits: Limits, env: Mapping[str, str] | None
    ) -> RunResult:
        """Run under the isolation in use, the work dir handed to the candidate uid if root."""
        undo = grant_tree(tree.root, tree.protected, tree.private) if running_as_root() else None
        try:
            if mode == "bwrap":
                return self._run_bwrap(command, tree, limits, env)
            return self._run_rlimits(command, tree, limits, env)
        finally:
            if undo is not None:
                undo()

    def _inner(self, tree: Tree, limits: Limits, token: str) -> str:
        """The inner tier's config: the candidate uid as root, else the evaluator's own."""
        root = running_as_root()
        return inner_config(
            tree,
            limits,
            uid=CANDIDATE_UID if root else None,
            keep_ro=interpreter_dirs(mask_dirs(tree)),
            tmp_mb=self.config.tmp_mb,
            token=None if root else token,
            unisolated=self.config.allow_unisolated,
        )

    def _run_bwrap(
        self, command: str, tree: Tree, limits: Limits, env: Mapping[str, str] | None
    ) -> RunResult:
        """Run under bubblewrap: private /tmp, protected paths bound read-only."""
        token = new_token()
        full_env = sandbox_env(
            home=tree.root, tmpdir="/tmp", token=token, extra=env, pycache=tree.hidden[0]
        )
        full_env.update(runner_env(sys.executable, MOUNT_PATH, self._inner(tree, limits, token)))
        argv = bwrap_argv(
            self._bwrap or "bwrap",
            workdir=tree.root,
            readonly=tree.protected,
            env=full_env,
            network=limits.network,
            argv=[SHELL, "-c", outer_line(command, limits)],
            results=tree.results,
            around=tree.around,
            writable=tree.hidden,
        )
        return self._execute(argv, tree.root, full_env, token, limits, sweep_strays=False)

    def _run_rlimits(
        self, command: str, tree: Tree, limits: Limits, env: Mapping[str, str] | None
    ) -> RunResult:
        """Run with rlimits only: a fresh TMPDIR, protected paths chmod-ed read-only."""
        token = new_token()
        try:
            tmpdir = tempfile.mkdtemp(prefix=f"cambrian-{self.run_id or 'sbx'}-")
        except OSError as exc:
            raise SandboxError(f"cannot create a temporary directory: {exc}") from exc
        saved: dict[str, int] = {}
        try:
            full_env = sandbox_env(
                home=tree.root, tmpdir=tmpdir, token=token, extra=env, pycache=tree.hidden[0]
            )
            inner = self._inner(tree, limits, token)
            full_env.update(runner_env(sys.executable, str(RUNNER_DIR), inner))
            if not running_as_root():
                saved = make_readonly(tree.protected)
            argv = launcher_argv(sys.executable, [SHELL, "-c", outer_line(command, limits)])
            return self._execute(argv, tree.root, full_env, token, limits, sweep_strays=True)
        finally:
            restore_modes(saved)
            remove_tree(tmpdir)

    def _execute(
        self,
        argv: list[str],
        root: str,
        env: dict[str, str],
        token: str,
        limits: Limits,
        *,
        sweep_strays: bool,
    ) -> RunResult:
        """Start ``argv`` in a new session, supervise it and classify how it ended."""
        before = pid_snapshot()
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise SandboxError(f"cannot start {argv[0]}: {exc}") from exc
        with self._lock:
            self._live[proc.pid] = token
            closed = self._closed
        if closed:  # close() ran while this run was starting: it must not outlive close()
            kill_group(proc.pid)
        try:
            tails = {proc.stdout.fileno(): OutputTail(limits.output_bytes)}
            tails[proc.stderr.fileno()] = OutputTail(limits.output_bytes)
            marked = token if sweep_strays else None
            exited, cpu_s = supervise(proc, tails, start + limits.timeout_s, marked, before)
        finally:
            if proc.returncode is None:  # interrupted (e.g. KeyboardInterrupt): leave nothing
                kill_group(proc.pid)
                proc.wait()
                if sweep_strays:
                    sweep(token, skip=before)
            with self._lock:
                self._live.pop(proc.pid, None)
            proc.stdout.close()
            proc.stderr.close()
        out, err = (tail.text() for tail in tails.values())
        return self._result(proc.returncode, out, err, exited, cpu_s, limits, start)

    def _result(
        self,
        rc: int | None,
        out: str,
        err: str,
        exited: bool,
        cpu_s: float,
        limits: Limits,
        start: float,
    ) -> RunResult:
        """Build the ``RunResult``, telling timeouts, CPU exhaustion and OOM kills apart."""
        cpu_limit = rlimit_values(limits)["-t"]
        cpu_out = rc in _SIGXCPU or (rc in _SIGKILLED and cpu_s >= cpu_limit - 1)
        timed_out = not exited or cpu_out
        oom = not timed_out and not self._closed
        oom = oom and (rc in _SIGKILLED or any(m in err for m in _OOM_MARKERS))
        duration = time.monotonic() - start
        return RunResult(rc, out, err, timed_out=timed_out, oom_killed=oom, duration_s=duration)

    def describe(self) -> str:
        """One line naming the isolation this backend gives (probes bwrap on first use)."""
        bwrap = self.isolation == "bwrap"
        return describe_process(self.config, bwrap=bwrap, root=running_as_root())

    def identity(self) -> dict[str, Any]:
        """What to record with the run: backend, isolation, bwrap version, GPUs."""
        version = None
        if self.isolation == "bwrap" and self._bwrap:
            done = subprocess.run([self._bwrap, "--version"], capture_output=True, text=True)
            version = done.stdout.strip() or None
        gpus = list(self._gpus.gpu_ids) if self._gpus is not None else []
        return {"backend": "process", "isolation": self.isolation, "bwrap": version, "gpus": gpus}

    def close(self) -> None:
        """Kill everything still running from this sandbox. Idempotent."""
        with self._lock:
            self._closed = True
            live = dict(self._live)
            workers = self._workers
        if workers is not None:
            workers.close()
        for pgid, token in live.items():
            kill_group(pgid)
            sweep(token)
        if self._pycache is not None:
            remove_tree(self._pycache)
