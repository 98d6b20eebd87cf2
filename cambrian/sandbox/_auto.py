"""``sandbox.backend = "auto"``: Docker when usable, else the process backend.

Docker is usable when a daemon answers and the image exists; the fallback logs one
warning line naming the isolation lost.
"""

from __future__ import annotations

import logging

from cambrian.config import SandboxConfig
from cambrian.errors import SandboxError
from cambrian.sandbox._docker import DockerSandbox
from cambrian.sandbox._process import ProcessSandbox
from cambrian.types import Sandbox

log = logging.getLogger("cambrian")


def auto_sandbox(config: SandboxConfig, *, run_id: str = "") -> Sandbox:
    """Build a ``DockerSandbox`` if Docker is usable here, else a ``ProcessSandbox``.

    Raises:
        SandboxError: GPUs are asked for but none is available (either backend).
    """
    try:
        return DockerSandbox(config, run_id=run_id)
    except SandboxError as exc:
        if "GPU" in str(exc):
            raise
        fallback = ProcessSandbox(config, run_id=run_id)
        lost = "memory cgroup, pids cgroup, separate root filesystem"
        if fallback.isolation != "bwrap":
            lost = f"network, filesystem, {lost}"
        log.warning("sandbox: Docker unusable (%s); using the process sandbox: lost %s", exc, lost)
        return fallback
