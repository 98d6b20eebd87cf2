"""``sandbox.backend = "ray"``: each evaluation is a Ray task on a node of a cluster.

The controller packs the candidate's work dir, the bridge process (``_ray_bridge``)
submits it as a Ray task with the configured CPUs, memory and GPUs, and the node runs it
in its own Docker or process sandbox (``_ray_node``). The files the run changed come
back into the local work dir, so evaluators read their results exactly as locally.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from cambrian.config import SandboxConfig
from cambrian.errors import SandboxError
from cambrian.sandbox._protect import resolve_readonly
from cambrian.sandbox._tier import check_results
from cambrian.sandbox._transfer import apply_changes, pack_tree, write_results
from cambrian.types import Limits, RunResult

log = logging.getLogger("cambrian")

_CLOSE_WAIT_S = 15.0
_CHECK_EVERY_S = 5.0
SECRET_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET")


def _settings(config: SandboxConfig, run_id: str) -> dict[str, Any]:
    """What the bridge needs: where the cluster is and what one evaluation reserves."""
    ray = config.ray
    return {
        "address": ray.address,
        "namespace": f"cambrian-{run_id}",
        "node_ip": ray.node_ip,
        "retries": ray.retries,
        "grace_s": ray.grace_s,
        "head_timeout_s": ray.head_timeout_s,
        "queue_timeout_s": ray.queue_timeout_s,
        "resources": {
            "num_cpus": config.cpus or 1.0,
            "num_gpus": config.gpus_per_eval,
            "memory": (config.memory_mb or 0) * 2**20,
        },
    }


class RaySandbox:
    """Runs each command as a Ray task; results and changed files come back here.

    Args:
        config: The ``[sandbox]`` section; ``[sandbox.ray]`` says where the cluster is.
        run_id: The run's id, used for the Ray namespace and the nodes' containers.

    Raises:
        SandboxError: Ray is not installed, the cluster does not answer within
            ``sandbox.ray.connect_timeout_s``, or no node can hold one evaluation.
    """

    name = "ray"

    def __init__(self, config: SandboxConfig, *, run_id: str = "") -> None:
        if importlib.util.find_spec("ray") is None:
            raise SandboxError(
                'sandbox.backend = "ray" needs Ray here and on every node: '
                "pip install 'cambrian[ray]'"
            )
        self.config = config
        self.run_id = run_id or "adhoc"
        self.address = config.ray.address or "this machine's default"
        temp = Path(tempfile.gettempdir())
        self.log_path = temp / f"cambrian-ray-{self.run_id}-{os.getpid()}.log"
        self._settings = _settings(config, self.run_id)
        self._conn, self._process = self._start_bridge()
        self._lock = threading.Lock()
        self._waiting: dict[str, Future] = {}
        self._seen: set[tuple[str, str]] = set()
        self._broken = ""
        self._closed = False
        self.cluster = self._handshake(config.ray.connect_timeout_s)
        self.address = self.cluster["address"]
        if self.address == "local":
            log.warning(
                "no Ray cluster is running: started a local Ray instance (%g CPUs) for this "
                "run; it stops with the run (set sandbox.ray.address to use a cluster)",
                self.cluster["cpus"],
            )
        if config.network:
            log.warning(
                "sandbox.network = true on Ray: candidates can reach the cluster's own "
                "ports, which Ray does not authenticate"
            )
        self._reader = threading.Thread(target=self._read, name="cambrian-ray-reader", daemon=True)
        self._reader.start()

    # --- connection -----------------------------------------------------------------------
    def _start_bridge(self) -> tuple[Connection, subprocess.Popen]:
        """Start the Ray driver process, joined to this one by a socket pair.

        Its own session, so a Ctrl-C meant for the controller does not kill it first;
        it exits by itself when the controller's end of the socket closes.
        """
        mine, theirs = socket.socketpair()
        env = {k: v for k, v in os.environ.items() if not k.endswith(SECRET_SUFFIXES)}
        with open(self.log_path, "ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "cambrian.sandbox._ray_bridge", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                env=env,
                start_new_session=True,
            )
        theirs.close()
        conn = Connection(mine.detach())
        conn.send(self._settings)
        return conn, process

    def _handshake(self, timeout_s: float) -> dict[str, Any]:
        """Wait for the bridge to connect; ``SandboxError`` naming the fix if it cannot."""
        fix = "start it with `ray start --head` or set sandbox.ray.address"
        try:
            answered = self._conn.poll(timeout_s)
            message = self._conn.recv() if answered else None
        except (EOFError, OSError):
            message = ("fatal", f"the Ray driver process exited: {self._log_tail()}")
        if message is None:
            self._process.kill()
            self._process.wait()
            raise SandboxError(
                f"no answer from the Ray cluster at {self.address} within {timeout_s:g}s: "
                f"{fix} (log: {self.log_path})"
            )
        if message[0] != "ready":
            self._stop_bridge()
            raise SandboxError(f"cannot use the Ray cluster at {self.address}: {message[1]}; {fix}")
        return message[1]

    def _read(self) -> None:
        """Hand each answer of the bridge to the evaluation waiting for it.

        Whatever ends this thread (the bridge gone, a bad message) fails every waiting
        evaluation, so none can wait forever.
        """
        try:
            while True:
                kind, *rest = self._conn.recv()
                if kind == "log":
                    log.warning("%s", rest[1])
                    continue
                future = self._waiting.pop(rest[0], None)
                if future is None:
                    continue
                if kind == "done":
                    future.set_result(rest[1])
                else:
                    future.set_exception(SandboxError(rest[1]))
        except (EOFError, OSError):
            pass
        except Exception:  # noqa: BLE001 - a malformed answer: fail loudly, never hang
            log.exception("bad answer from the Ray driver process")
        finally:
            self._fail_waiting()

    def _fail_waiting(self) -> None:
        """Mark the connection broken and answer every evaluation still waiting."""
        with self._lock:
            self._broken = "closed" if self._closed else self._lost_message()
            waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if self._closed:
                future.set_result({"closed": True})
            else:
                future.set_exception(SandboxError(self._broken))

    def _log_tail(self) -> str:
        """The bridge log's last line, to say why it stopped."""
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        return (lines or [f"see {self.log_path}"])[-1][:300]

    def _lost_message(self) -> str:
        """The one-line error for a lost cluster, with the way to resume."""
        return (
            f"lost the connection to the Ray cluster at {self.address} (head down for "
            f"{self.config.ray.head_timeout_s:g}s or driver exited; log: {self.log_path}): "
            "restart the cluster, then resume with `cambrian run --run-dir <run>`"
        )

    # --- running --------------------------------------------------------------------------
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
        """Function mode on a node: ``target`` in a warm worker of its process sandbox."""
        return self.run(
            "", workdir=workdir, limits=limits, env=env, readonly=readonly, private=private,
            python=target, uses=uses,
        )  # fmt: skip

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
        python: str = "",
        uses: int = 100,
    ) -> RunResult:
        """Run ``command`` on a cluster node in a copy of ``workdir``; see ``types.Sandbox``.

        With ``python`` (``FILE:FUNCTION``) instead, the node's process sandbox calls that
        function in one of its warm workers (``call``), kept by each Ray worker process.

        The node's own sandbox keeps ``private`` from candidate code and gives the
        evaluator a result folder of its own; its files come back into ``result_dir``.

        A worker or node that dies mid-run is retried on another node
        (``sandbox.ray.retries``), then reported in ``RunResult.lost``.

        Raises:
            ValueError: Empty command, non-positive timeout, a bad ``readonly`` or
                ``private`` entry, or a ``result_dir`` missing or inside ``workdir``.
            SandboxError: The work dir is missing, the cluster is lost, a node cannot
                sandbox, or this sandbox is closed.
        """
        if not command.strip() and not python:
            raise ValueError("command must be a non-empty shell line")
        if not limits.timeout_s > 0:
            raise ValueError(f"limits.timeout_s must be positive, got {limits.timeout_s!r}")
        given, root = os.path.abspath(workdir), os.path.realpath(workdir)
        if not os.path.isdir(root):
            raise SandboxError(f"work dir {workdir} does not exist or is not a directory")
        resolve_readonly(Path(root), readonly)
        resolve_readonly(Path(root), private, what="private")
        results = check_results(result_dir, root)
        key, started = uuid.uuid4().hex, time.monotonic()
        spec = {
            "key": key,
            "command": command,
            "python": python,
            "uses": uses,
            "workdirs": sorted({given, root}, key=len, reverse=True),
            "env": dict(env or {}),
            "readonly": list(readonly),
            "private": list(private),
            "result_dir": results,
            "limits": asdict(limits),
            "sandbox": self.config.model_dump(mode="json"),
            "run_id": self.run_id,
        }
        future: Future = Future()
        tree = pack_tree(Path(root))
        with self._lock:
            if self._closed or self._broken:
                raise SandboxError(self._broken or "this Ray sandbox is closed; create a new one")
            self._waiting[key] = future
            try:
                self._conn.send(("run", key, spec, tree))
            except OSError:
                self._waiting.pop(key, None)
                raise SandboxError(self._lost_message()) from None
        while True:  # the bridge answers or dies; a dead one fails the future
            try:
                payload = future.result(timeout=_CHECK_EVERY_S)
                break
            except FutureTimeout:
                if self._process.poll() is not None and not future.done():
                    self._fail_waiting()
        return self._result(payload, Path(root), results, time.monotonic() - started)

    def _result(
        self, payload: dict[str, Any], root: Path, results: str | None, elapsed: float
    ) -> RunResult:
        """The ``RunResult`` of a bridge answer; the node's changes go into ``root``.

        The evaluator's result files come back into ``results``.
        """
        if payload.get("closed"):
            return RunResult(-9, "", "killed: the sandbox was closed", duration_s=elapsed)
        notes = "".join(f"[cambrian] {note}\n" for note in payload.get("notes", ()))
        if "lost" in payload:
            return RunResult(None, "", notes, duration_s=elapsed, lost=payload["lost"])
        node, isolation = payload["node"], payload["isolation"]
        if (node, isolation) not in self._seen:
            self._seen.add((node, isolation))
            log.info("ray node %s evaluates with: %s", node[:8], isolation)
        changes = payload["changes"]
        refused = apply_changes(root, changes)
        if results:
            write_results(results, payload.get("results", {}))
        if changes.skipped or refused:
            left = sorted({*changes.skipped, *refused})
            notes += f"[cambrian] {len(left)} changed file(s) not copied back: {left[:5]}\n"
        result = RunResult(**payload["result"])
        if notes:
            result = replace(result, stderr=notes + result.stderr)
        return result

    # --- the Sandbox face -----------------------------------------------------------------
    def describe(self) -> str:
        """One line: the cluster, and what each evaluation reserves and runs in."""
        c, r = self.cluster, self._settings["resources"]
        gpus = f", {r['num_gpus']:g} GPU" if r["num_gpus"] else ""
        return (
            f"ray cluster {self.address}: {c['nodes']} node(s), {c['cpus']:g} CPUs, "
            f"{c['gpus']:g} GPUs; each evaluation takes {r['num_cpus']:g} CPU{gpus} "
            f"in the node's {self.config.ray.node_backend} sandbox"
        )

    def identity(self) -> dict[str, Any]:
        """Backend, cluster address, Ray version, node sandbox and reserved resources."""
        return {
            "backend": "ray",
            "address": self.address,
            "ray": self.cluster["version"],
            "node_backend": self.config.ray.node_backend,
            "resources": self._settings["resources"],
        }

    def _stop_bridge(self) -> None:
        """Wait for the bridge to exit; kill it if it does not."""
        try:
            self._process.wait(_CLOSE_WAIT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def close(self) -> None:
        """Cancel evaluations in flight, disconnect from the cluster, stop the bridge."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.send(("close",))
            except OSError:
                pass
        self._stop_bridge()
        self._reader.join(_CLOSE_WAIT_S)
        self._conn.close()
        if self._process.returncode == 0:
            self.log_path.unlink(missing_ok=True)  # kept only when something went wrong
