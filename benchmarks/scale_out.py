"""Scale-out on Ray: evaluation throughput at 1, 2, 4, 8 and 16 slots, as a share of ideal.

For each slot count k it starts a local two-node Ray cluster on 127.0.0.1 whose nodes
hold k slots together (k/2 CPUs each; one node for k = 1), then runs a real evolution:
an instant scripted model (a loopback HTTP server), a 1 s sleep evaluator, each
evaluation a Ray task in the node's bubblewrap sandbox, ``run.eval_concurrency = 2k`` so
the slots never wait for work. The ideal is k evaluations per second; the figure is the
measured rate between the first and the last child evaluation, over that ideal.

    python benchmarks/scale_out.py [--slots 1 2 4 8 16] [--per-slot 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fixtures_ray import RayCluster, start_cluster  # noqa: E402

from cambrian.agent import Evolution, open_run  # noqa: E402
from cambrian.llm import ScriptedLLMServer, mutate_numbers  # noqa: E402

SLEEP = "sleep 1; echo '{\"score\": 1.0}'"
TARGET_SHARE = 0.8  # of the ideal, at every slot count


def _cluster(slots: int) -> RayCluster:
    """A head and a second node sharing ``slots`` CPUs (one node for a single slot)."""
    nodes = 1 if slots == 1 else 2
    return start_cluster(nodes, cpus=slots // nodes)


def _run(slots: int, evaluations: int, url: str, address: str, root: Path) -> tuple[int, float]:
    """Evaluated children and their rate (per second) in one run on the cluster."""
    task = root / f"task{slots}"
    task.mkdir(parents=True)
    for name in ("cambrian.toml", "solve.py"):
        shutil.copy(ROOT / "cambrian" / "scaffold" / name, task / name)
    overrides = [
        f"run.iterations={evaluations}",
        f"run.max_proposals={20 * evaluations}",
        f"run.eval_concurrency={2 * slots}",
        f"run.proposal_concurrency={2 * slots}",
        f"evaluator.command={json.dumps(SLEEP)}",
        'sandbox.backend="ray"',
        f"sandbox.ray.address={json.dumps(address)}",
        'sandbox.ray.node_ip="127.0.0.1"',
        'sandbox.ray.node_backend="process"',
    ]
    extra = {"llm": {"model": "openai/scripted", "api_base": url}}
    ctx = open_run(task, root / f"run{slots}", extra=extra, overrides=overrides)
    times: list[float] = []

    def on_event(event) -> None:
        if event.program.parent_id is not None and event.evaluation is not None:
            times.append(time.perf_counter())

    try:
        asyncio.run(Evolution(ctx, on_event=on_event).run())
    finally:
        ctx.close()
    # Steady state: from the end of the first 2k evaluations (Ray starting k worker
    # processes that import cambrian, once per run) to the end of the last one.
    warm = times[min(2 * slots, len(times) - 2)]
    rate = (len(times) - 1 - times.index(warm)) / (times[-1] - warm)
    return len(times), rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--per-slot", type=int, default=10, help="evaluations per slot")
    args = parser.parse_args()
    print(f"{'slots':>5}  {'evaluations':>11}  {'rate /s':>8}  {'ideal /s':>8}  share")
    worst = 1.0
    with tempfile.TemporaryDirectory() as tmp, ScriptedLLMServer(mutate_numbers(0)) as server:
        for slots in args.slots:
            cluster = _cluster(slots)
            try:
                n, rate = _run(slots, args.per_slot * slots, server.url, cluster.address, Path(tmp))
            finally:
                cluster.stop()
            share = rate / slots
            worst = min(worst, share)
            print(f"{slots:>5}  {n:>11}  {rate:>8.2f}  {slots:>8.2f}  {share:>5.0%}", flush=True)
    verdict = "PASS" if worst >= TARGET_SHARE else "MISS"
    print(f"worst share of ideal    {worst:.0%} (target >= {TARGET_SHARE:.0%}, {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
