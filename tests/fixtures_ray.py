"""A private two-node Ray cluster on 127.0.0.1: a head and a second node, 2 CPUs each.

Both nodes get their own temporary folder, so stopping them touches no other Ray on the
machine; the dashboard is off (about 0.7 GB and 10 s for the pair).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cambrian.config import SandboxConfig

CPUS_PER_NODE = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ray_available() -> bool:
    """Whether Ray is installed here."""
    return importlib.util.find_spec("ray") is not None


def _ray(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ray.scripts.scripts", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)


@dataclass
class RayCluster:
    """The running cluster: its address and the folders that identify its processes."""

    address: str
    roots: list[Path]

    def pids(self, *, role: str = "") -> list[int]:
        """Processes of this cluster, children included (optionally only titles with ``role``)."""
        table: dict[int, tuple[int, str, str]] = {}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                environ = (proc / "environ").read_bytes().decode(errors="replace")
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            table[int(proc.name)] = (ppid, cmdline, environ)
        mine = {
            pid
            for pid, (_, cmdline, environ) in table.items()
            if any(str(root) in cmdline or str(root) in environ for root in self.roots)
        }
        grew = True
        while grew:  # Ray's agents and workers rename themselves: follow the process tree
            children = {pid for pid, (ppid, _, _) in table.items() if ppid in mine} - mine
            mine |= children
            grew = bool(children)
        return sorted(pid for pid in mine if table[pid][1].startswith(role))

    def start_node(self, env: dict[str, str], cpus: int = CPUS_PER_NODE) -> Path:
        """Start one more node joined to the head; return its temporary folder."""
        root = Path(tempfile.mkdtemp(prefix="cambrian-ray-node-"))
        self.roots.append(root)
        done = _ray(
            "start", "--address", self.address, "--node-ip-address", "127.0.0.1",
            "--num-cpus", str(cpus), "--temp-dir", str(root),
            "--dashboard-agent-listen-port", str(_free_port()),
            "--metrics-export-port", str(_free_port()), "--disable-usage-stats",
            env={**env, "TMPDIR": str(root)},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return root

    def stop(self) -> None:
        """Kill every process of this cluster and remove its folders."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for root in self.roots:
            shutil.rmtree(root, ignore_errors=True)


def ray_config(address: str, base: dict | None = None, **ray: object) -> SandboxConfig:
    """A ``[sandbox]`` section for the Ray backend on a local cluster (node backend process)."""
    settings = {"address": address, "node_ip": "127.0.0.1", "node_backend": "process", **ray}
    return SandboxConfig.model_validate({**(base or {}), "backend": "ray", "ray": settings})


def ray_env() -> dict[str, str]:
    """The environment the nodes start with: no provider keys, no usage stats."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def start_cluster(nodes: int = 2, cpus: int = CPUS_PER_NODE) -> RayCluster:
    """Start a head (plus ``nodes - 1`` more nodes) with ``cpus`` CPUs each, on 127.0.0.1."""
    env = ray_env()
    head = Path(tempfile.mkdtemp(prefix="cambrian-ray-head-"))
    port = _free_port()
    done = _ray(
        "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1",
        "--num-cpus", str(cpus), "--include-dashboard=false",
        "--ray-client-server-port", str(_free_port()), "--temp-dir", str(head),
        "--dashboard-agent-listen-port", str(_free_port()),
        "--metrics-export-port", str(_free_port()), "--disable-usage-stats",
        env={**env, "TMPDIR": str(head)},
    )  # fmt: skip
    cluster = RayCluster(f"127.0.0.1:{port}", [head])
    try:
        assert done.returncode == 0, done.stderr[-2000:]
        for _ in range(nodes - 1):
            cluster.start_node(env, cpus)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster | None]:
    """A head plus one node on 127.0.0.1 (None when Ray is not installed)."""
    if not ray_available():
        yield None
        return
    cluster = start_cluster(2)
    try:
        yield cluster
    finally:
        cluster.stop()
