"""Per-evaluation overhead of each sandbox backend on a trivial evaluator.

Prints the median wall time of ``python -c pass``-free ``true`` evaluations (``--n`` runs
each, default 50) for the process backend (rlimits, bubblewrap) and Docker (a container
per evaluation, warm pool), the overhead as a share of a 1 s evaluation, and compares
with the targets: warm Docker <= 100 ms, bubblewrap <= 30 ms.

    python benchmarks/sandbox.py --n 50
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cambrian.config import SandboxConfig
from cambrian.errors import SandboxError
from cambrian.sandbox import DockerSandbox, ProcessSandbox, make_limits

TARGETS_MS = {"process-bwrap": 30.0, "docker-warm": 100.0}


def _backends():
    yield "process-rlimits", lambda: ProcessSandbox(SandboxConfig(), isolation="rlimits")
    yield "process-bwrap", lambda: ProcessSandbox(SandboxConfig(), isolation="bwrap")
    yield "docker", lambda: DockerSandbox(SandboxConfig(), run_id="bench")
    yield "docker-warm", lambda: DockerSandbox(SandboxConfig(warm=True), run_id="bench")


def measure(make, n: int) -> float:
    box = make()
    limits = make_limits(box.config, 30)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "evaluate.py").write_text("print('{\"score\": 1}')\n")
            box.run("true", workdir=Path(tmp), limits=limits, readonly=["evaluate.py"])  # warm-up
            times = []
            for _ in range(n):
                start = time.perf_counter()
                result = box.run("true", workdir=Path(tmp), limits=limits, readonly=["evaluate.py"])
                times.append(time.perf_counter() - start)
                assert result.returncode == 0, result.stderr
    finally:
        box.close()
    return statistics.median(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50)
    n = parser.parse_args().n
    failed = False
    for name, make in _backends():
        try:
            ms = measure(make, n)
        except SandboxError as exc:
            print(f"{name:16s} unavailable: {exc}")
            failed |= name in TARGETS_MS
            continue
        target = TARGETS_MS.get(name)
        verdict = "" if target is None else ("  OK" if ms <= target else "  OVER")
        failed |= target is not None and ms > target
        bound = f" (target <= {target:.0f} ms)" if target else ""
        print(
            f"{name:16s} median {ms:7.1f} ms  = {ms / 10:5.1f}% of a 1 s evaluation{bound}{verdict}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
