"""Resource limits: from config to ``Limits``, and from ``Limits`` to rlimits.

The process backends apply rlimits with the shell's own ``ulimit`` builtin, prepended to
the command line, instead of a ``preexec_fn``: a ``preexec_fn`` forces a full ``fork()``
of the agent process (about 8 ms once litellm is loaded) where ``vfork`` costs well under
1 ms. ``ulimit`` without ``-S``/``-H`` sets soft and hard limits, so candidate code
cannot raise them again.
"""

from __future__ import annotations

import functools
import math
import os
import resource
import subprocess

from cambrian.config import SandboxConfig
from cambrian.types import Limits

SHELL = "/bin/sh"
# Exit status of the ulimit prefix when the shell refuses a limit (an infrastructure fault).
ULIMIT_FAILED = 125


def make_limits(config: SandboxConfig, timeout_s: float) -> Limits:
    """Build the ``Limits`` of one evaluation from the sandbox config section.

    Args:
        config: The ``[sandbox]`` section.
        timeout_s: Wall-clock limit in seconds (from the evaluator section).

    Returns:
        Limits with memory, CPUs, pids, output cap (``output_kb`` * 1024), file size and network.
    """
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
    return Limits(
        timeout_s=float(timeout_s),
        memory_mb=config.memory_mb,
        cpus=config.cpus,
        pids=config.pids,
        output_bytes=config.output_kb * 1024,
        file_size_mb=config.file_size_mb,
        network=config.network,
    )


def running_as_root() -> bool:
    """Whether we run as uid 0 (root ignores RLIMIT_NPROC)."""
    return os.geteuid() == 0


@functools.cache
def _nproc_flag() -> str:
    """The shell's ``ulimit`` flag for RLIMIT_NPROC: ``-u`` (bash) or ``-p`` (dash, ash)."""
    probe = subprocess.run(
        [SHELL, "-c", "ulimit -u"], capture_output=True, stdin=subprocess.DEVNULL, check=False
    )
    return "-u" if probe.returncode == 0 else "-p"


def _clamp(rlimit: int, value: int) -> int:
    """Lower ``value`` to our own hard limit, which an unprivileged shell cannot exceed."""
    hard = resource.getrlimit(rlimit)[1]
    return value if hard == resource.RLIM_INFINITY else min(value, hard)


def rlimit_values(limits: Limits) -> dict[str, int]:
    """The rlimits one run gets, keyed by ``ulimit`` flag, in the shell's units.

    ``-v`` is KiB, ``-t`` seconds, ``-f`` 512-byte blocks (POSIX shells), ``-c`` blocks.
    RLIMIT_NPROC is included only when not running as root, since root ignores it.
    """
    values = {"-c": 0}
    if limits.memory_mb is not None:
        values["-v"] = _clamp(resource.RLIMIT_AS, limits.memory_mb * 1024 * 1024) // 1024
    cpu = math.ceil(limits.timeout_s) + 1
    values["-t"] = _clamp(resource.RLIMIT_CPU, cpu)
    values["-f"] = _clamp(resource.RLIMIT_FSIZE, limits.file_size_mb * 1024 * 1024) // 512
    if limits.pids is not None and not running_as_root():
        values[_nproc_flag()] = _clamp(resource.RLIMIT_NPROC, limits.pids)
    return values


def with_rlimits(command: str, limits: Limits) -> str:
    """Prefix ``command`` with ``ulimit`` calls on the same line (keeps line numbers)."""
    calls = " && ".join(f"ulimit {flag} {value}" for flag, value in rlimit_values(limits).items())
    return f"{{ {calls}; }} || exit {ULIMIT_FAILED}; {command}"
