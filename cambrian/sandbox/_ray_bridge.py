"""The Ray driver, in a process of its own beside the controller.

Ray ends a driver process outright when it loses the head for too long. Keeping the
driver in this child process means the controller only sees a closed pipe, turns it
into a clear ``SandboxError``, and stops its run cleanly (resumable).

The bridge submits one Ray task per evaluation, learns from a tracker actor when and
where each one starts, enforces a deadline on started evaluations, and re-runs an
evaluation whose worker or node died on another node, ``retries`` times at most.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from cambrian import __version__

POLL_S = 0.05
TRACK_EVERY_S = 0.5
FEASIBLE_EVERY_S = 5.0
GET_TIMEOUT_S = 30.0
CANCEL_GRACE_S = 10.0

_NODE_IN_MESSAGE = re.compile(r"node ID: ([0-9a-f]{16,})")


def _last_line(exc: BaseException) -> str:
    """An exception's last non-empty line (a Ray task error carries a whole traceback)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines or [type(exc).__name__])[-1][:300]


@dataclass
class _Flight:
    """One evaluation in the cluster."""

    key: str
    spec: dict[str, Any]
    tree: Any  # the ObjectRef of the packed tree, put once for every attempt
    ref: Any = None
    attempt: int = 0
    node: str = ""
    started: float | None = None
    submitted: float = 0.0
    tried: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Bridge:
    """The driver loop: talks to the controller on ``conn`` and to Ray.

    Args:
        conn: This end of the pipe to the controller.
        settings: ``address``, ``namespace``, ``node_ip``, ``retries``, ``grace_s``,
            ``head_timeout_s`` and the task ``resources`` (``num_cpus``, ``num_gpus``,
            ``memory`` in bytes).
    """

    def __init__(self, conn: Connection, settings: dict[str, Any]) -> None:
        import ray
        from ray.util import scheduling_strategies

        from cambrian.sandbox._ray_node import Tracker, run_on_node

        self.ray, self.conn, self.settings = ray, conn, settings
        self.strategies = scheduling_strategies
        self.resources = settings["resources"]
        here = ray.get_runtime_context().get_node_id()
        strategy = scheduling_strategies.NodeAffinitySchedulingStrategy(here, soft=True)
        actor = ray.remote(Tracker).options(
            num_cpus=0, scheduling_strategy=strategy, max_restarts=-1, max_task_retries=-1
        )
        self.tracker = actor.remote()
        self.task = ray.remote(run_on_node)
        self.flights: dict[str, _Flight] = {}
        self.by_ref: dict[Any, str] = {}
        self.unfeasible_since: float | None = None
        self.dying: list[tuple[float, Any]] = []  # (when to force, ref) of cancelled tasks
        self.last_track = self.last_feasible = 0.0

    # --- the cluster --------------------------------------------------------------------
    def _alive(self) -> list[dict[str, Any]]:
        """The live nodes as ``ray.nodes()`` describes them."""
        return [n for n in self.ray.nodes() if n.get("Alive")]

    def summary(self) -> dict[str, Any]:
        """Alive nodes with their CPUs, GPUs and memory."""
        nodes = self._alive()
        return {
            "nodes": len(nodes),
            "cpus": sum(n["Resources"].get("CPU", 0) for n in nodes),
            "gpus": sum(n["Resources"].get("GPU", 0) for n in nodes),
            "version": self.ray.__version__,
            "feasible": any(self._fits(n["Resources"]) for n in nodes),
        }

    def _fits(self, resources: dict[str, float]) -> bool:
        """Whether a node with ``resources`` can hold one evaluation."""
        need = {"CPU": self.resources["num_cpus"], "GPU": self.resources["num_gpus"]}
        need["memory"] = self.resources["memory"]
        return all(resources.get(name, 0) >= amount for name, amount in need.items() if amount)

    def demand(self) -> str:
        """The resources one evaluation asks for, in words."""
        r = self.resources
        memory = f", {r['memory'] / 2**20:g} MiB memory" if r["memory"] else ""
        gpus = f", {r['num_gpus']:g} GPU" if r["num_gpus"] else ""
        return f"{r['num_cpus']:g} CPU{gpus}{memory}"

    # --- submitting ---------------------------------------------------------------------
    def fitting_nodes(self) -> set[str]:
        """Ids of the live nodes big enough for one evaluation."""
        return {n["NodeID"] for n in self._alive() if self._fits(n["Resources"])}

    def submit(self, flight: _Flight) -> None:
        """Start (or restart) ``flight``, on a node it has not tried when one can hold it."""
        options: dict[str, Any] = {**self.resources, "max_retries": 0}
        if not options["memory"]:
            del options["memory"]
        others = sorted(self.fitting_nodes() - set(flight.tried)) if flight.tried else []
        if others:  # a named node: label constraints are not always kept for reused leases
            node = others[(flight.attempt + hash(flight.key)) % len(others)]
            options["scheduling_strategy"] = self.strategies.NodeAffinitySchedulingStrategy(
                node, soft=True
            )
        flight.attempt += 1
        flight.started, flight.node, flight.submitted = None, "", time.monotonic()
        task = self.task.options(**options)
        flight.ref = task.remote(flight.spec, flight.attempt, flight.tree, self.tracker)
        self.by_ref[flight.ref] = flight.key

    def accept(self, key: str, spec: dict[str, Any], tree: bytes) -> None:
        """A new evaluation from the controller; one that cannot be submitted is an error."""
        try:
            flight = _Flight(key, spec, self.ray.put(tree))
            self.flights[key] = flight
            self.submit(flight)
        except Exception as exc:  # noqa: BLE001 - reported for this evaluation, the rest go on
            self.flights.pop(key, None)
            self.conn.send(("error", key, f"cannot submit to Ray: {_last_line(exc)}"))

    def cancel(self, ref: Any) -> None:
        """Interrupt a task (its clean-up runs), and kill it if it is still there in 10 s."""
        self.by_ref.pop(ref, None)
        self.ray.cancel(ref, force=False)
        self.dying.append((time.monotonic() + CANCEL_GRACE_S, ref))

    def reap(self, now: float) -> None:
        """Kill the cancelled tasks that did not stop by themselves."""
        due = [ref for when, ref in self.dying if when <= now]
        self.dying = [(when, ref) for when, ref in self.dying if when > now]
        for ref in due:
            self.ray.cancel(ref, force=True)

    # --- results ------------------------------------------------------------------------
    def _finish(self, flight: _Flight, kind: str, payload: Any) -> None:
        """Answer the controller for ``flight`` and forget it."""
        self.flights.pop(flight.key, None)
        self.by_ref.pop(flight.ref, None)
        if kind == "done":
            payload = {**payload, "notes": flight.notes, "attempts": flight.attempt}
        self.conn.send((kind, flight.key, payload))

    def _lost(self, flight: _Flight, why: str) -> None:
        """An attempt died with its worker or node: retry elsewhere, or record the loss."""
        where = flight.node[:8] or "unknown node"
        note = f"attempt {flight.attempt} on node {where}: {why}"
        flight.notes.append(note)
        if flight.node:
            flight.tried.append(flight.node)
        self.by_ref.pop(flight.ref, None)
        if flight.attempt <= self.settings["retries"]:
            self.conn.send(("log", "warning", f"ray: {note}; retrying on another node"))
            self.submit(flight)
            return
        self._finish(flight, "done", {"lost": "; ".join(flight.notes)})

    def collect(self, ref: Any) -> None:
        """Handle a finished task: a result, a lost attempt, or a node that cannot sandbox."""
        flight = self.flights.get(self.by_ref.get(ref, ""))
        if flight is None:
            return
        errors = self.ray.exceptions
        try:
            value = self.ray.get(ref, timeout=GET_TIMEOUT_S)
        except errors.RayTaskError as exc:  # our node code raised: a bug, not the candidate
            message = f"ray task failed on node {flight.node[:8]}: {_last_line(exc)}"
            self._finish(flight, "error", message)
            return
        except (errors.RayError, TimeoutError) as exc:
            self.take_starts(time.monotonic())  # where did it run?
            found = _NODE_IN_MESSAGE.search(str(exc))
            flight.node = flight.node or (found.group(1) if found else "")
            self._lost(flight, type(exc).__name__)
            return
        flight.node = value["node"]
        if value["version"] != __version__:
            message = (
                f"node {flight.node[:8]} runs cambrian {value['version']}, this controller "
                f"{__version__}: install the same version on every node"
            )
            self._finish(flight, "error", message)
            return
        if "sandbox_error" in value:
            if flight.attempt <= self.settings["retries"]:
                self._lost(flight, value["sandbox_error"])
            else:
                message = f"node {flight.node[:8]}: {value['sandbox_error']}"
                self._finish(flight, "error", message)
            return
        self._finish(flight, "done", value)

    # --- the loop -----------------------------------------------------------------------
    def take_starts(self, now: float) -> None:
        """Learn which evaluations started since the last call, and where."""
        try:
            starts = self.ray.get(self.tracker.take.remote(), timeout=GET_TIMEOUT_S)
        except (self.ray.exceptions.RayError, TimeoutError) as exc:
            print(f"tracker unreachable: {_last_line(exc)}", file=sys.stderr, flush=True)
            starts = []
        for key, attempt, node in starts:
            flight = self.flights.get(key)
            if flight is not None and flight.attempt == attempt and flight.started is None:
                flight.started, flight.node = now, node

    def track(self, now: float) -> None:
        """Learn which evaluations started; end those past their deadline or queue time."""
        self.take_starts(now)
        queue_s = self.settings["queue_timeout_s"]
        for flight in list(self.flights.values()):
            limit = flight.spec["limits"]["timeout_s"] + self.settings["grace_s"]
            if flight.started is not None and now - flight.started > limit:
                note = f"no result {limit:g}s after it started on node {flight.node[:8]}"
            elif flight.started is None and now - flight.submitted > queue_s:
                note = f"not started {queue_s:g}s after it was submitted"
            else:
                continue
            self.cancel(flight.ref)
            flight.notes.append(note)
            self._finish(flight, "done", {"lost": "; ".join(flight.notes)})
        self.reap(now)

    def check_feasible(self, now: float) -> None:
        """Fail the waiting evaluations when no live node can run one for too long."""
        waiting = [f for f in self.flights.values() if f.started is None]
        if not waiting:
            self.unfeasible_since = None
            return
        if self.fitting_nodes():
            self.unfeasible_since = None
            return
        self.unfeasible_since = self.unfeasible_since or now
        if now - self.unfeasible_since > self.settings["head_timeout_s"]:
            message = f"no live Ray node can run an evaluation needing {self.demand()}"
            for flight in waiting:
                self.cancel(flight.ref)
                self._finish(flight, "error", message)

    def serve(self) -> None:
        """Run until the controller says close or goes away."""
        while True:
            refs = list(self.by_ref)
            if refs:
                ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=POLL_S)
                for ref in ready:
                    self.collect(ref)
            while self.conn.poll(0 if refs else 0.2):
                try:
                    message = self.conn.recv()
                except EOFError:
                    return
                if message[0] == "close":
                    return
                self.accept(*message[1:])
            now = time.monotonic()
            if self.flights and now - self.last_track > TRACK_EVERY_S:
                self.last_track = now
                self.track(now)
            if self.flights and now - self.last_feasible > FEASIBLE_EVERY_S:
                self.last_feasible = now
                self.check_feasible(now)

    def close(self) -> None:
        """Interrupt every evaluation still in the cluster; kill those that do not stop."""
        refs = [flight.ref for flight in self.flights.values()] + [r for _, r in self.dying]
        for ref in refs:
            self.ray.cancel(ref, force=False)
        if refs:
            self.ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S)
            for ref in refs:
                self.ray.cancel(ref, force=True)


def _cluster_address(settings: dict[str, Any]) -> str | None:
    """The cluster to join, as ``ray.init()`` finds one; None: start a local instance.

    With no address: ``$RAY_ADDRESS``, else what the last ``ray start`` on this machine
    recorded (``ray_current_cluster`` in Ray's temporary folder). Decided before Ray is
    imported, so a local instance can get its settings from the environment.
    """
    if settings["address"]:
        return settings["address"]
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    temp = os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()
    try:
        return Path(temp, "ray", "ray_current_cluster").read_text().strip() or None
    except OSError:
        return None


def _connect(ray: Any, address: str | None, settings: dict[str, Any], init: dict[str, Any]) -> str:
    """Join the cluster at ``address``, or start a local Ray instance; its address or "local".

    A local instance lives in its own temporary folder and ends with this process, that
    is with the run. An address given (``auto`` included) must answer.
    """
    if address:
        ray.init(address=address, namespace=settings["namespace"], **init)
        return address
    temp = tempfile.mkdtemp(prefix="cambrian-ray-local-")
    ray.init(namespace=settings["namespace"], include_dashboard=False, _temp_dir=temp, **init)
    return "local"


def bridge_main(conn: Connection, settings: dict[str, Any]) -> None:
    """Connect, say ready (or fatal), then serve until told to close."""
    os.environ["RAY_gcs_rpc_server_reconnect_timeout_s"] = str(int(settings["head_timeout_s"]))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = _cluster_address(settings)
    if address is None:  # a local instance: token authentication, with a token of its own
        # (Ray would otherwise write one to ~/.ray/auth_token, which later clusters of
        # the user's then pick up)
        os.environ.setdefault("RAY_AUTH_MODE", "token")
        os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    import ray

    init: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": False}
    if settings["node_ip"]:
        init["_node_ip_address"] = settings["node_ip"]
    try:
        address = _connect(ray, address, settings, init)
        bridge = Bridge(conn, settings)
        summary = {**bridge.summary(), "address": address}
    except Exception as exc:  # noqa: BLE001 - any failure to connect is reported, then we exit
        conn.send(("fatal", f"{type(exc).__name__}: {_last_line(exc)}"))
        return
    if not summary["feasible"]:
        conn.send(("fatal", f"no Ray node has {bridge.demand()} for one evaluation"))
        return
    conn.send(("ready", summary))
    try:
        bridge.serve()
    finally:
        bridge.close()
        ray.shutdown()


if __name__ == "__main__":  # started by RaySandbox with the socket's fd as argument
    os.set_inheritable(int(sys.argv[1]), False)  # Ray's processes must not hold it open
    channel = Connection(int(sys.argv[1]))
    bridge_main(channel, channel.recv())
