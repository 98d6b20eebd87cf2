"""The part of the Ray backend that runs on a cluster node, inside a Ray task.

``run_on_node`` unpacks the candidate's tree into a private folder on the node, runs
the evaluator in the node's own Docker or process sandbox (same limits, same hostile-case
guarantees as a local run), and returns the result and the files the run changed. Ray
has already reserved the task's CPUs, memory and GPUs; the GPUs it assigned are the only
ones the node sandbox hands to the command.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

from cambrian import __version__
from cambrian.config import SandboxConfig
from cambrian.errors import SandboxError
from cambrian.sandbox._factory import get_sandbox
from cambrian.sandbox._transfer import pack_changes, read_results, snapshot, unpack_tree
from cambrian.types import Limits, Sandbox

DIR_PREFIX = "cambrian-ray-"
NODE_ENV = "CAMBRIAN_RAY_NODE"

# One sandbox per (config, GPUs) in each Ray worker process, so warm containers and
# probed engines are reused between the tasks a worker runs; closed when it exits.
_SANDBOXES: dict[tuple[str, tuple[str, ...]], Sandbox] = {}
atexit.register(lambda: [box.close() for box in _SANDBOXES.values()])


def _node_sandbox(settings: dict[str, Any], gpu_ids: tuple[str, ...], run_id: str) -> Sandbox:
    """The node-local sandbox for these settings, built once per worker process.

    Raises:
        SandboxError: The node cannot sandbox, or (``node_backend = "auto"``) it has
            neither Docker nor bubblewrap: rlimits alone must be chosen explicitly.
    """
    key = (repr(sorted(settings.items())), gpu_ids)
    if key not in _SANDBOXES:
        chosen = settings["ray"]["node_backend"]
        config = SandboxConfig.model_validate(
            {**settings, "backend": chosen, "gpu_ids": gpu_ids or None}
        )
        box = get_sandbox(config, run_id=run_id)
        if chosen == "auto" and getattr(box, "isolation", "") == "rlimits":
            box.close()
            raise SandboxError(
                "this node has neither Docker nor bubblewrap (rlimits only: no filesystem "
                "or network isolation): install one, or set sandbox.ray.node_backend = "
                '"process" to accept that'
            )
        _SANDBOXES[key] = box
    return _SANDBOXES[key]


@functools.cache
def _interruptible() -> None:
    """Let ``ray.cancel`` interrupt this task, so the evaluation's clean-up runs.

    Ray interrupts a task as Ctrl-C would, and Python drops that while SIGINT is
    ignored, which a worker of a cluster started by ``nohup ... &`` inherits: the
    evaluation (a container) would then outlive the run.
    """
    if threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL):
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _remove_stale_dirs(parent: Path) -> None:
    """Delete the folders of Ray workers on this node that died mid-evaluation.

    Once per worker process: a worker that dies is replaced by a new one, which sweeps.
    """
    for folder in parent.glob(f"{DIR_PREFIX}*"):
        pid = folder.name[len(DIR_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def _rewrite(value: str, places: list[tuple[str, str]]) -> str:
    """``value`` with a leading controller path (work dir, result folder) made the node's."""
    for path, here in places:
        if value == path or value.startswith(f"{path}/"):
            return here + value[len(path) :]
    return value


def run_on_node(spec: dict[str, Any], attempt: int, tree: bytes, tracker: Any) -> dict[str, Any]:
    """Evaluate one candidate on this node (the body of the Ray task).

    Args:
        spec: ``key``, ``command``, ``workdirs`` (the controller's paths of the work dir,
            rewritten in ``env``), ``env``, ``readonly``, ``private``, ``result_dir``
            (the controller's, or None), ``limits`` (a ``Limits`` as a dict),
            ``sandbox`` (the ``[sandbox]`` section as a dict) and ``run_id``.
        attempt: Which attempt this is (reported to the tracker with the node).
        tree: The work dir as made by ``pack_tree``.
        tracker: The bridge's tracker actor, told where each attempt started.

    Returns:
        ``node``, ``version``, ``isolation`` and either ``result`` (a ``RunResult`` as a
        dict) with ``changes`` (``Changes``) and ``results`` (the result folder's files),
        or ``sandbox_error`` when the node cannot sandbox.
    """
    import ray

    _interruptible()
    node = ray.get_runtime_context().get_node_id()
    tracker.started.remote(spec["key"], attempt, node)
    answer: dict[str, Any] = {"node": node, "version": __version__, "isolation": ""}
    parent = Path(tempfile.gettempdir())
    _remove_stale_dirs(parent)
    base = Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-", dir=parent))
    try:
        workdir, results = base / "work", base / "results"
        unpack_tree(tree, workdir)
        results.mkdir(mode=0o700)
        before = snapshot(workdir)
        gpus = tuple(str(g) for g in ray.get_gpu_ids()) if spec["sandbox"]["gpus_per_eval"] else ()
        sandbox = _node_sandbox(spec["sandbox"], gpus, spec["run_id"])
        answer["isolation"] = sandbox.describe()
        places = [(path, str(workdir)) for path in spec["workdirs"]]
        if spec.get("result_dir"):
            places.insert(0, (spec["result_dir"], str(results)))
        env = {k: _rewrite(v, places) for k, v in spec["env"].items()}
        env[NODE_ENV] = node
        shared = {
            "workdir": workdir,
            "limits": Limits(**spec["limits"]),
            "env": env,
            "readonly": tuple(spec["readonly"]),
            "private": tuple(spec.get("private", ())),
        }
        if spec.get("python"):
            result = _call(sandbox, spec["python"], spec.get("uses", 100), shared)
        else:
            result_dir = results if spec.get("result_dir") else None
            result = sandbox.run(spec["command"], result_dir=result_dir, **shared)
        changes = pack_changes(workdir, before, [*spec["readonly"], *spec.get("private", ())])
        answer["results"] = read_results(results) if spec.get("result_dir") else {}
        return {**answer, "result": dataclasses.asdict(result), "changes": changes}
    except SandboxError as exc:
        return {**answer, "sandbox_error": str(exc)}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _call(sandbox: Sandbox, target: str, uses: int, shared: dict[str, Any]) -> Any:
    """Function mode on this node: the node sandbox's warm workers (process backend)."""
    call = getattr(sandbox, "call", None)
    if call is None:
        raise SandboxError(
            f"evaluator.python needs the process backend on each node, not {sandbox.name}: "
            'set sandbox.ray.node_backend = "process"'
        )
    return call(target, uses=uses, **shared)


class Tracker:
    """A small Ray actor: tasks report when and where they start; the bridge collects it."""

    def __init__(self) -> None:
        self._new: list[tuple[str, int, str]] = []

    def started(self, key: str, attempt: int, node: str) -> None:
        """Record that attempt ``attempt`` of evaluation ``key`` started on ``node``."""
        self._new.append((key, attempt, node))

    def take(self) -> list[tuple[str, int, str]]:
        """The starts recorded since the last call."""
        new, self._new = self._new, []
        return new
