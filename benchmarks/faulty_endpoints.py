"""Wall time of a run whose ensemble holds a failing and a hung endpoint, against one without.

Runs N evaluations on a copy of the `cambrian init` task, with a trivial shell evaluator on
the process sandbox, twice: with an instant scripted model alone, and with that model
beside one that always answers HTTP 500 and one that never answers within
``llm.timeout_s``. Every model is a real HTTP server on loopback, and the other settings
are the defaults (retries, backoff, bench_after, cool-downs, concurrency). Prints both
wall times, their ratio and the requests each bad endpoint got; ``--unbenched`` adds the
faulty ensemble with the breaker off (``llm.bench_after = 0``).

    python benchmarks/faulty_endpoints.py [--n 60] [--timeout-s 2] [--unbenched]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

from cambrian.agent import Evolution, open_run
from cambrian.llm import Fault, ScriptedLLMServer, mutate_numbers, replay

SCAFFOLD = Path(__file__).resolve().parents[1] / "cambrian" / "scaffold"
TRIVIAL = "echo '{\"score\": 1.0}'"


def _task(root: Path) -> Path:
    task = root / "task"
    task.mkdir(parents=True)
    for name in ("cambrian.toml", "solve.py", "evaluate.py"):
        shutil.copy(SCAFFOLD / name, task / name)
    return task


def _run(root: Path, n: int, models: list[dict], timeout_s: float, bench_after: int) -> float:
    """Wall seconds of one run of ``n`` evaluations over ``models``."""
    overrides = [
        f"run.iterations={n}",
        f"evaluator.command={json.dumps(TRIVIAL)}",
        f"run.max_proposals={20 * n}",
        'sandbox.backend="process"',
        f"llm.timeout_s={timeout_s}",
        f"llm.bench_after={bench_after}",
    ]
    ctx = open_run(
        _task(root), root / "run", extra={"llm": {"models": models}}, overrides=overrides
    )
    try:
        start = time.perf_counter()
        reason = asyncio.run(Evolution(ctx).run())
        wall = time.perf_counter() - start
        evaluated = ctx.archive.stats()["evaluated"]
    finally:
        ctx.close()
    if reason != "iterations" or evaluated < n:
        raise SystemExit(f"the run stopped with {reason!r} after {evaluated} evaluations")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="evaluations per run")
    parser.add_argument("--timeout-s", type=float, default=2.0, help="llm.timeout_s")
    parser.add_argument("--unbenched", action="store_true", help="also run with the breaker off")
    args = parser.parse_args()
    good = ScriptedLLMServer(mutate_numbers(0))
    failing = ScriptedLLMServer(replay([Fault(500)]))
    hung = ScriptedLLMServer(replay([Fault(200, "too late", delay_s=3600)]))
    with tempfile.TemporaryDirectory() as tmp, good, failing, hung:
        fleet = [
            {"name": "openai/good", "api_base": good.url},
            {"name": "openai/failing", "api_base": failing.url},
            {"name": "openai/hung", "api_base": hung.url},
        ]
        _run(Path(tmp) / "warm-up", 2, fleet[:1], args.timeout_s, 2)  # imports litellm
        alone = _run(Path(tmp) / "alone", args.n, fleet[:1], args.timeout_s, 2)
        faulty = _run(Path(tmp) / "faulty", args.n, fleet, args.timeout_s, 2)
        print(f"evaluations per run      {args.n} (llm.timeout_s = {args.timeout_s:g})")
        print(f"good model alone         {alone:.1f} s")
        print(f"good + failing + hung    {faulty:.1f} s  (ratio {faulty / alone:.2f})")
        print(f"  requests: failing {failing.requests}, hung {hung.requests}")
        if args.unbenched:
            before = failing.requests, hung.requests
            off = _run(Path(tmp) / "off", args.n, fleet, args.timeout_s, 0)
            print(f"  the same, breaker off  {off:.1f} s  (ratio {off / alone:.2f})")
            print(
                f"  requests: failing {failing.requests - before[0]}, "
                f"hung {hung.requests - before[1]}"
            )


if __name__ == "__main__":
    main()
