"""How the process backend starts a warm evaluator worker (see ``_workers``).

The worker is the evaluator tier as ``ProcessSandbox.run`` builds it (bubblewrap, or
the launcher's ``--outer`` namespaces), running ``runner/cambrian_worker.py`` in its
slot folder with stdin, stdout and stderr piped.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
import tempfile

from cambrian.errors import SandboxError
from cambrian.sandbox._bwrap import bwrap_argv
from cambrian.sandbox._env import new_token, sandbox_env
from cambrian.sandbox._limits import SHELL
from cambrian.sandbox._tier import MOUNT_PATH, RUNNER_DIR, launcher_argv, outer_line, runner_env
from cambrian.types import Limits

WORKER = "cambrian_worker.py"
WORKER_CPU_S = 86400.0  # a worker's CPU-time rlimit; each evaluation has its own timeout


def worker_command(runner_dir: str, target: str, evaluator_dir: str) -> str:
    """The shell line that starts a worker for ``target`` (``FILE:FUNCTION``)."""
    path, _, function = target.rpartition(":")
    script, file = f"{runner_dir}/{WORKER}", os.path.join(evaluator_dir, path)
    return "exec " + shlex.join([sys.executable, "-u", script, file, function])


def start_worker(
    slot: str, target: str, limits: Limits, around: tuple[str, ...], *, bwrap: str | None
) -> subprocess.Popen:
    """Start a process-backend worker in ``slot``: the evaluator tier, as ``run`` builds it.

    ``bwrap`` is bubblewrap's path, or None for the launcher's ``--outer`` namespaces;
    ``around`` as for ``bwrap_argv``.
    """
    # A worker lives for many evaluations: its CPU-time rlimit is not one evaluation's.
    lifetime = dataclasses.replace(limits, timeout_s=WORKER_CPU_S)
    token = new_token()
    runner = MOUNT_PATH if bwrap else str(RUNNER_DIR)
    tmpdir = "/tmp" if bwrap else tempfile.mkdtemp(prefix="cambrian-warm-tmp-", dir=slot)
    env = sandbox_env(home=os.path.join(slot, "w"), tmpdir=tmpdir, token=token)
    env.update(runner_env(sys.executable, runner, ""))
    line = outer_line(worker_command(runner, target, os.path.join(slot, "e")), lifetime)
    if bwrap:
        argv = bwrap_argv(
            bwrap, workdir=slot, readonly=(), env=env, network=limits.network,
            argv=[SHELL, "-c", line], around=around,
        )  # fmt: skip
    else:
        argv = launcher_argv(sys.executable, [SHELL, "-c", line])
    try:
        return subprocess.Popen(
            argv,
            cwd=slot,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise SandboxError(f"cannot start a warm evaluator worker: {exc}") from exc
