"""Run candidate code from a Python evaluator, in the sandbox's inner tier.

Inside a cambrian sandbox this module is importable by the evaluator (it is on the
evaluator's ``PYTHONPATH``, never the candidate's)::

    import cambrian_candidate as candidate

    code, out, err = candidate.run([sys.executable, "solve.py"], timeout_s=30)

``run`` prefixes the command with ``$CAMBRIAN_RUN``: the candidate gets its own uid
and namespaces, sees neither the evaluator's processes nor the result file, and
everything it started is dead when ``run`` returns. Without ``$CAMBRIAN_RUN`` (an
evaluator started by hand, outside cambrian) the command runs as a plain child
process. Standard library only; copy this file next to an evaluator to use it outside
cambrian.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from collections.abc import Mapping, Sequence

RUN_VAR = "CAMBRIAN_RUN"
_STOP_GRACE_S = 5.0


def prefix() -> list[str]:
    """The inner-tier launcher command (``$CAMBRIAN_RUN``), or ``[]`` outside cambrian."""
    return shlex.split(os.environ.get(RUN_VAR, ""))


def run(
    argv: Sequence[str],
    *,
    timeout_s: float | None = None,
    stdin: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[int, str, str]:
    """Run candidate code and wait for it.

    Args:
        argv: The command, e.g. ``[sys.executable, "solve.py"]``.
        timeout_s: Wall-clock limit; past it the candidate and everything it started
            are killed and ``TimeoutError`` is raised.
        stdin: Text or bytes fed to the candidate's stdin (default: none).
        env: Variables added to the candidate's environment (it gets a short
            allowlist otherwise, never the evaluator's own variables).

    Returns:
        ``(returncode, stdout, stderr)``, the output decoded as UTF-8; a candidate
        killed by signal N returns 128 + N.

    Raises:
        TimeoutError: The candidate ran past ``timeout_s``.
        ValueError: ``argv`` is empty.
    """
    if isinstance(argv, str) or not argv:
        raise ValueError("argv must be a non-empty sequence of arguments, not a str")
    command = [str(arg) for arg in argv]
    if env:
        command = ["env", *(f"{k}={v}" for k, v in env.items()), *command]
    data = stdin.encode() if isinstance(stdin, str) else stdin
    with subprocess.Popen(
        prefix() + command,
        stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(data, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _stop(proc)
            raise TimeoutError(f"candidate ran past {timeout_s:g}s and was killed") from None
    code = proc.returncode
    code = 128 - code if code < 0 else code
    return code, out.decode(errors="replace"), err.decode(errors="replace")


def _stop(proc: subprocess.Popen) -> None:
    """Ask the launcher to end the candidate (SIGTERM), then kill it if it lingers."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
