"""``DockerSandbox``: the evaluator in a locked-down container, fresh or from a warm pool.

Each evaluation gets a container with no network, a read-only root, a size-capped tmpfs
``/tmp``, ``no-new-privileges``, memory (no swap), CPU and pids limits. The evaluator
runs as root in it with four capabilities only (``OUTER_CAPS``); candidate code, started
through ``$CAMBRIAN_RUN``, runs as uid 65534 with none, and everything it started is
killed when the launcher returns. The work dir is bound read-write at its own path
(handed to uid 65534, or opened to every uid when cambrian is not root), the evaluator's
files read-only on top, the private files owner-only, and the result folder read-write
at its own path, owner-only.

In warm mode (``sandbox.warm``) containers live on and each evaluation is an ``exec``:
the work dir is copied into the container's slot dir and back, protected files are
root-owned and read-only there (and hash-checked by the evaluator as everywhere), the
result folder is the slot's owner-only ``r`` and copied back, stray processes and
``/tmp`` are wiped after each use, and a container is recycled after a timeout, an OOM
kill or a failed clean-up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from cambrian.config import SandboxConfig
from cambrian.errors import SandboxError
from cambrian.sandbox._capture import OutputTail
from cambrian.sandbox._container import (
    IDLE_NAME,
    connect,
    container_spec,
    oom_kills,
    remove_container,
)
from cambrian.sandbox._dockerio import run_exec
from cambrian.sandbox._env import SYSTEM_PATH, new_token, sandbox_env
from cambrian.sandbox._gpu import gpu_slots
from cambrian.sandbox._image import image_name
from cambrian.sandbox._limits import SHELL
from cambrian.sandbox._protect import resolve_readonly
from cambrian.sandbox._tier import (
    CANDIDATE_UID,
    LAUNCHER,
    MOUNT_PATH,
    Tree,
    check_results,
    inner_config,
    outer_line,
    runner_env,
)
from cambrian.sandbox._warm import Slot, copy_back, fill_slot
from cambrian.sandbox._workdir import copy_results, grant_tree, move_path, open_tree
from cambrian.types import Limits, RunResult

_OOM_MARKERS = ("MemoryError", "std::bad_alloc", "Cannot allocate memory")
_SIGKILLED = (137, -9)
_SIGXCPU = (152, -24)
# Kill every process of the candidate uid, then the evaluator's (root's) but the idle one.
_CLEANUP = (
    f"python3 -I -S -B {MOUNT_PATH}/{LAUNCHER} --sweep {CANDIDATE_UID} {IDLE_NAME} || exit 1; "
    "rm -rf /tmp/* /tmp/.[!.]* 2>/dev/null; exit 0"
)
# The evaluator is root in the container; candidates drop to CANDIDATE_UID from there.
_ROOT = "0:0"
_CLEANUP_S = 5.0
_EXIT_WAIT_S = 2.0


class DockerSandbox:
    """Runs commands in Docker containers through the ``docker`` SDK.

    Args:
        config: The ``[sandbox]`` section (image, pip, warm, tmp, GPU settings).
        run_id: The evolution run's id, set as the ``cambrian.run`` label of every
            container.

    Raises:
        SandboxError: No daemon answers, the image is missing, or GPUs are asked for where
            there are none.
    """

    name = "docker"

    def __init__(self, config: SandboxConfig, *, run_id: str = "") -> None:
        self.config = config
        self.run_id = run_id or "adhoc"
        self.image = image_name(config)
        self._client = connect()
        self._image_id, self._path = self._find_image()
        self._gpus = gpu_slots(config)
        self._root = os.geteuid() == 0
        self._lock = threading.Lock()
        self._live: set[str] = set()
        self._idle: list[Slot] = []
        self._closed = False

    def _find_image(self) -> tuple[str, str]:
        """The image's id and its ``PATH``; ``SandboxError`` with the fix if it is missing."""
        import docker

        try:
            image = self._client.images.get(self.image)
        except docker.errors.ImageNotFound:
            pip = "".join(f" --pip {p}" for p in self.config.pip)
            tag = f" --tag {self.config.image}" if self.config.image else ""
            raise SandboxError(
                f"Docker image {self.image} not found: run `cambrian sandbox build-image"
                f"{tag}{pip}` or set sandbox.image"
            ) from None
        env = dict(e.split("=", 1) for e in image.attrs["Config"].get("Env") or [] if "=" in e)
        return image.id, env.get("PATH", SYSTEM_PATH)

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
        """Run ``command`` (the evaluator) through ``/bin/sh -c`` in a container.

        Args:
            command: A shell line.
            workdir: Existing directory, mounted read-write at the same path.
            limits: Wall-clock, memory, CPU, pids, output and file-size limits, network.
            env: Variables added to the scrubbed allowlist (the evaluator's only).
            readonly: Paths relative to ``workdir`` mounted read-only.
            private: Paths relative to ``workdir`` only the evaluator may read.
            result_dir: A folder outside ``workdir`` only the evaluator may write.

        Returns:
            Exit status, output tails and kill flags; a crash is a normal result.

        Raises:
            ValueError: Empty command, non-positive timeout, a bad ``readonly`` or
                ``private`` entry, or a ``result_dir`` missing or inside ``workdir``.
            SandboxError: Missing work dir, a container that cannot start, or closed.
        """
        if not command.strip():
            raise ValueError("command must be a non-empty shell line")
        if not limits.timeout_s > 0:
            raise ValueError(f"limits.timeout_s must be positive, got {limits.timeout_s!r}")
        if self._closed:
            raise SandboxError("this docker sandbox is closed; create a new one")
        root = os.path.realpath(workdir)
        if not os.path.isdir(root):
            raise SandboxError(f"work dir {workdir} does not exist or is not a directory")
        tree = Tree(
            root,
            tuple(resolve_readonly(Path(root), readonly)),
            tuple(resolve_readonly(Path(root), private, what="private")),
            check_results(result_dir, root),
        )
        with self._gpu_slot() as gpus:
            if self.config.warm:
                return self._run_warm(command, tree, limits, env, gpus)
            return self._run_fresh(command, tree, limits, env, gpus)

    @contextlib.contextmanager
    def _gpu_slot(self) -> Iterator[tuple[str, ...]]:
        """Hold this evaluation's GPUs (none when the config asks for none)."""
        if self._gpus is None:
            yield ()
            return
        with self._gpus.acquire() as gpus:
            yield gpus

    def _start(self, limits: Limits, mounts: list[Any], gpus: Sequence[str]) -> str:
        """Create and start a container; remove it again if the start fails."""
        import docker

        spec = container_spec(
            self.config,
            limits,
            image=self._image_id,
            run_id=self.run_id,
            mounts=mounts,
            gpus=gpus,
            path=self._path,
        )
        container_id = None
        try:
            container_id = self._client.containers.create(**spec).id
            with self._lock:
                self._live.add(container_id)
            self._client.api.start(container_id)
            return container_id
        except docker.errors.APIError as exc:
            if container_id is not None:  # a failed GPU request leaves it in "Created"
                self._remove(container_id)
            reason = getattr(exc, "explanation", None) or str(exc)
            raise SandboxError(f"cannot start a container from {self.image}: {reason}") from None

    def _remove(self, container_id: str) -> None:
        """Remove a container of ours and forget it."""
        with self._lock:
            self._live.discard(container_id)
        remove_container(self._client, container_id)

    def _run_fresh(
        self, command: str, tree: Tree, limits: Limits, env: Any, gpus: Any
    ) -> RunResult:
        """One container for this evaluation, removed on every path."""
        from docker.types import Mount

        root = tree.root
        mounts = [Mount(root, root, type="bind")]
        mounts += [Mount(p, p, type="bind", read_only=True) for p in tree.protected]
        if tree.results:
            mounts.append(Mount(tree.results, tree.results, type="bind"))
        undo = self._grant(tree)
        container_id = None
        try:
            container_id = self._start(limits, mounts, gpus)
            full_env = self._env(tree, limits, env)
            return self._exec(container_id, command, root, full_env, limits)
        finally:
            if container_id is not None:
                self._remove(container_id)
            undo()

    def _grant(self, tree: Tree) -> Any:
        """Let the candidate uid write the work dir but not the evaluator's files; the undo."""
        if self._root:
            return grant_tree(tree.root, tree.protected, tree.private, CANDIDATE_UID)
        return open_tree(tree.root, tree.protected, tree.private)

    def _env(self, tree: Tree, limits: Limits, extra: Mapping[str, str] | None) -> dict[str, str]:
        """The scrubbed allowlist with the image's ``PATH``, and the inner tier's config."""
        env = sandbox_env(home=tree.root, tmpdir="/tmp", token=new_token(), extra=extra)
        env["PATH"] = self._path
        # pids are a cgroup limit here; RLIMIT_NPROC would count the uid across the host.
        inner = inner_config(
            tree,
            dataclasses.replace(limits, pids=None),
            uid=CANDIDATE_UID,
            tmp_mb=self.config.tmp_mb,
            umask=None if self._root else 0,
        )
        env.update(runner_env("python3", MOUNT_PATH, inner))
        return env

    def _exec(
        self, container_id: str, command: str, cwd: str, env: dict[str, str], limits: Limits
    ) -> RunResult:
        """Exec ``command`` in a running container and classify how it ended."""
        api = self._client.api
        start = time.monotonic()
        # Not root here: files the evaluator makes must stay removable by our own uid.
        line = command if self._root else f"umask 000; {command}"
        argv = [SHELL, "-c", outer_line(line, dataclasses.replace(limits, pids=None))]
        ooms = oom_kills(container_id)
        exec_id = api.exec_create(container_id, argv, workdir=cwd, environment=env, user=_ROOT)[
            "Id"
        ]
        out, err = OutputTail(limits.output_bytes), OutputTail(limits.output_bytes)
        try:
            ended = run_exec(api, exec_id, out, err, limits.timeout_s)
        except OSError as exc:
            if self._closed:
                ended = False
            else:
                raise SandboxError(f"lost the exec stream of {container_id[:12]}: {exc}") from None
        rc = self._exit_code(exec_id) if ended else None
        now_ooms = oom_kills(container_id)
        oom_seen = None if ooms is None or now_ooms is None else now_ooms > ooms
        stderr = err.text()
        timed_out = not ended or rc in _SIGXCPU
        oom = not timed_out and not self._closed
        marked = any(m in stderr for m in _OOM_MARKERS)
        oom = oom and (oom_seen or marked or (oom_seen is None and rc in _SIGKILLED))
        duration = time.monotonic() - start
        return RunResult(rc, out.text(), stderr, timed_out, bool(oom), duration)

    def _exit_code(self, exec_id: str) -> int | None:
        """The exec's exit code (the daemon may take a moment to record it)."""
        until = time.monotonic() + _EXIT_WAIT_S
        while True:
            info = self._client.api.exec_inspect(exec_id)
            if not info.get("Running") or time.monotonic() > until:
                return info.get("ExitCode")
            time.sleep(0.005)

    def _run_warm(self, command: str, tree: Tree, limits: Limits, env: Any, gpus: Any) -> RunResult:
        """Exec in a warm container: copy the work dir in, run, clean up, copy it back."""
        slot = self._take_slot(limits, tuple(gpus))
        root, work, results = tree.root, os.path.join(slot.dir, "w"), os.path.join(slot.dir, "r")
        inner = dataclasses.replace(tree.moved(root, work), results=tree.results and results)
        owner = os.stat(root)
        result, sticky, back = None, [], ""
        try:
            sticky = fill_slot(tree, inner, as_root=self._root)
            places = {root: work, tree.results: results}
            moved = {k: move_path(v, places) for k, v in (env or {}).items()}
            full_env = self._env(inner, limits, moved)
            result = self._exec(slot.container_id, command, work, full_env, limits)
            if tree.results:
                copy_results(results, tree.results)
        finally:
            back = copy_back(work, root, owner, sticky)
            # The wipe empties /tmp, which holds the slot's mount too: only after the copy.
            ok = result is not None and not (result.timed_out or result.oom_killed or back)
            self._release(slot, ok and self._wipe(slot))
        if back:  # what the candidate left (a FIFO, an unreadable folder) is its failure
            result = dataclasses.replace(result, lost=f"work dir not copied back: {back}")
        return result

    def _take_slot(self, limits: Limits, gpus: tuple[str, ...]) -> Slot:
        """An idle warm container for these GPUs, or a new one."""
        from docker.types import Mount

        with self._lock:
            for slot in self._idle:
                if slot.gpus == gpus:
                    self._idle.remove(slot)
                    return slot
        slot_dir = tempfile.mkdtemp(prefix=f"cambrian-pool-{self.run_id}-")
        os.chmod(slot_dir, 0o755)
        os.mkdir(os.path.join(slot_dir, "w"))
        try:
            cid = self._start(limits, [Mount(slot_dir, slot_dir, type="bind")], gpus)
        except BaseException:
            shutil.rmtree(slot_dir, ignore_errors=True)
            raise
        return Slot(cid, slot_dir, gpus)

    def _wipe(self, slot: Slot) -> bool:
        """Kill the candidate's leftover processes and empty /tmp; False if that failed."""
        try:
            rc = self._exec(slot.container_id, _CLEANUP, "/", {}, Limits(timeout_s=_CLEANUP_S))
        except SandboxError:
            return False
        return rc.returncode == 0 and not rc.timed_out

    def _release(self, slot: Slot, keep: bool) -> None:
        """Put a slot back in the pool, or recycle it."""
        with self._lock:
            if keep and not self._closed:
                self._idle.append(slot)
                return
        self._remove(slot.container_id)
        shutil.rmtree(slot.dir, ignore_errors=True)

    def describe(self) -> str:
        """One line naming the image and the isolation this backend gives."""
        cfg = self.config
        net = "network shared" if cfg.network else "no network"
        mode = "warm containers (exec)" if cfg.warm else "a container per evaluation"
        mem = f"mem={cfg.memory_mb}MB no swap" if cfg.memory_mb else "mem=unlimited"
        cpus = f"cpus={cfg.cpus:g}" if cfg.cpus else "cpus=unlimited"
        return (
            f"docker sandbox ({self.image}, {mode}): {net}, read-only root, tmpfs /tmp "
            f"{cfg.tmp_mb}MB, no-new-privileges, evaluator root with CAP_SETUID/SETGID/"
            f"SETPCAP/DAC_OVERRIDE, candidates uid {CANDIDATE_UID} with no capabilities; "
            f"{mem}, {cpus}, pids={cfg.pids or 'unlimited'}"
        )

    def identity(self) -> dict[str, Any]:
        """What to record with the run: backend, image name and id, daemon version."""
        return {
            "backend": "docker",
            "isolation": "docker",
            "image": self.image,
            "image_id": self._image_id,
            "mode": "warm" if self.config.warm else "per-evaluation",
            "docker": self._client.version().get("Version", "unknown"),
        }

    def close(self) -> None:
        """Remove every container this sandbox started (running ones are killed)."""
        with self._lock:
            self._closed = True
            live, idle = set(self._live), list(self._idle)
            self._idle.clear()
        for container_id in live:
            self._remove(container_id)
        for slot in idle:
            shutil.rmtree(slot.dir, ignore_errors=True)
