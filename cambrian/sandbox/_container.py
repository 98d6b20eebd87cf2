"""Docker plumbing shared by the sandbox and the CLI.

Connecting, labels, the container spec, out-of-memory counters, removing containers.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cambrian.config import SandboxConfig
from cambrian.errors import SandboxError
from cambrian.sandbox._tier import MOUNT_PATH, OUTER_CAPS, RUNNER_DIR
from cambrian.types import Limits

LABEL_RUN = "cambrian.run"
LABEL_OWNER = "cambrian.owner"
# The idle main process of every container; evaluations are exec'ed next to it. Its
# name ($0) lets the warm-container wipe spare it (only root processes can bear it).
IDLE_NAME = "cambrian-idle"
IDLE = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600; done", IDLE_NAME]
_CONNECT_TIMEOUT_S = 30
_OOM_FILES = (
    "/sys/fs/cgroup/memory/docker/{id}/memory.oom_control",
    "/sys/fs/cgroup/memory/system.slice/docker-{id}.scope/memory.oom_control",
    "/sys/fs/cgroup/system.slice/docker-{id}.scope/memory.events",
    "/sys/fs/cgroup/docker/{id}/memory.events",
)


def connect() -> Any:
    """A Docker client whose daemon answered a ping.

    Raises:
        SandboxError: The SDK is missing or no daemon answers.
    """
    try:
        import docker
    except ImportError:
        raise SandboxError("the docker package is not installed: pip install docker") from None
    try:
        client = docker.from_env(timeout=_CONNECT_TIMEOUT_S)
        client.ping()
    except Exception as exc:  # the SDK raises several unrelated types for "no daemon"
        raise SandboxError(
            f"no Docker daemon answers ({str(exc).splitlines()[0][:120]}): "
            "start dockerd or use --sandbox process"
        ) from None
    return client


def owner_label() -> str:
    """``host:pid`` of this process: ``sandbox clean`` removes containers whose owner died."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(label: str) -> bool:
    """Whether the process named by an owner label still runs (other hosts count as alive)."""
    host, _, pid = label.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return host != socket.gethostname()
    return Path(f"/proc/{pid}").exists()


def container_spec(
    config: SandboxConfig,
    limits: Limits,
    *,
    image: str,
    run_id: str,
    mounts: Sequence[Any],
    gpus: Sequence[str],
    path: str,
) -> dict[str, Any]:
    """Keyword arguments of ``containers.create`` for one locked-down container.

    It runs as root with ``OUTER_CAPS`` only (the evaluator starts candidates under their
    own uid from there) and shows the inner-tier launcher read-only at ``MOUNT_PATH``.
    """
    from docker.types import DeviceRequest, LogConfig, Mount

    tmp = f"rw,nosuid,nodev,size={config.tmp_mb}m,mode=1777"
    spec: dict[str, Any] = {
        "image": image,
        "command": IDLE,
        "detach": True,
        "init": True,
        "read_only": True,
        "tmpfs": {"/tmp": tmp if config.tmp_exec else f"{tmp},noexec"},
        "user": "0:0",
        "cap_drop": ["ALL"],
        "cap_add": [cap.removeprefix("CAP_") for cap in OUTER_CAPS],
        "security_opt": ["no-new-privileges"],
        "labels": {LABEL_RUN: run_id, LABEL_OWNER: owner_label()},
        "mounts": [*mounts, Mount(MOUNT_PATH, str(RUNNER_DIR), type="bind", read_only=True)],
        "log_config": LogConfig(type="none"),
        "environment": {"PATH": path},
        "pids_limit": limits.pids or -1,
    }
    if not limits.network:
        spec["network_mode"] = "none"
    if limits.memory_mb is not None:
        spec["mem_limit"] = spec["memswap_limit"] = f"{limits.memory_mb}m"
    if limits.cpus is not None:
        spec["nano_cpus"] = int(limits.cpus * 1e9)
    if gpus:
        spec["device_requests"] = [DeviceRequest(device_ids=list(gpus), capabilities=[["gpu"]])]
    return spec


def oom_kills(container_id: str) -> int | None:
    """The container's cgroup OOM-kill counter, or None where it cannot be read."""
    for pattern in _OOM_FILES:
        try:
            text = Path(pattern.format(id=container_id)).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
    return None


def remove_container(client: Any, container_id: str) -> bool:
    """Force-remove a container (kills its processes); False if it was already gone."""
    import docker

    try:
        client.api.remove_container(container_id, force=True, v=True)
        return True
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as exc:
        if "already in progress" in str(exc):
            return True
        raise SandboxError(f"cannot remove container {container_id[:12]}: {exc}") from None


def leftovers(client: Any, *, run_id: str | None = None) -> list[dict[str, Any]]:
    """Containers carrying our run label whose owner process is dead (or of ``run_id``)."""
    label = f"{LABEL_RUN}={run_id}" if run_id else LABEL_RUN
    found = client.api.containers(all=True, filters={"label": label})
    if run_id:
        return found
    return [c for c in found if not owner_alive(c.get("Labels", {}).get(LABEL_OWNER, ""))]
