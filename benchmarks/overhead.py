"""Framework overhead per candidate: wall time minus time inside the evaluator and the LLM.

Runs N candidates on a copy of the `cambrian init` task with an instant scripted model
(a real HTTP server on loopback) and a trivial shell evaluator, on the process sandbox.
Prints candidates/s at the configured concurrency and the serial overhead per candidate.

    python benchmarks/overhead.py [--n 200] [--isolation auto|bwrap|rlimits]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

from cambrian.agent import Evolution, open_run
from cambrian.llm import ScriptedLLMServer, mutate_numbers

SCAFFOLD = Path(__file__).resolve().parents[1] / "cambrian" / "scaffold"
TRIVIAL = "echo '{\"score\": 1.0}'"
TARGET_MS = 20.0


def _task(root: Path) -> Path:
    task = root / "task"
    task.mkdir(parents=True)
    for name in ("cambrian.toml", "solve.py", "evaluate.py"):
        shutil.copy(SCAFFOLD / name, task / name)
    return task


def _measure(n: int, concurrency: tuple[int, int], url: str, root: Path) -> dict[str, float]:
    task = _task(root / f"c{concurrency[0]}x{concurrency[1]}")
    run_dir = root / f"run-{concurrency[0]}x{concurrency[1]}"
    ctx = open_run(
        task,
        run_dir,
        extra={"llm": {"model": "openai/scripted", "api_base": url}},
        overrides=[
            f"run.iterations={n}",
            f"evaluator.command={json.dumps(TRIVIAL)}",
            f"run.proposal_concurrency={concurrency[0]}",
            f"run.eval_concurrency={concurrency[1]}",
            f"run.max_proposals={20 * n}",
        ],
    )
    try:
        start = time.perf_counter()
        asyncio.run(Evolution(ctx).run())
        wall = time.perf_counter() - start
        stats = ctx.archive.stats()
    finally:
        ctx.close()
    db = sqlite3.connect(run_dir / "archive.db")
    eval_s = db.execute("select coalesce(sum(duration_s), 0) from evaluations").fetchone()[0]
    llm_s = db.execute("select coalesce(sum(latency_s), 0) from llm_calls").fetchone()[0]
    calls = db.execute("select count(*) from llm_calls").fetchone()[0]
    return {
        "wall": wall,
        "evaluated": stats["evaluated"],
        "eval_s": eval_s,
        "llm_s": llm_s,
        "calls": calls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ScriptedLLMServer(mutate_numbers(0)) as server:
        serial = _measure(args.n, (1, 1), server.url, Path(tmp))
        wide = _measure(args.n, (4, 2), server.url, Path(tmp))
    n = serial["evaluated"]
    overhead_ms = 1000 * (serial["wall"] - serial["eval_s"] - serial["llm_s"]) / n
    print(f"candidates              {n} evaluated, {serial['calls']} LLM calls (serial run)")
    print(f"serial wall             {serial['wall']:.2f} s  ({n / serial['wall']:.1f} cand/s)")
    print(f"  inside evaluator      {1000 * serial['eval_s'] / n:.2f} ms/candidate")
    print(f"  inside LLM            {1000 * serial['llm_s'] / n:.2f} ms/candidate")
    print(f"  framework overhead    {overhead_ms:.2f} ms/candidate (target <= {TARGET_MS:.0f})")
    print(f"concurrent (4 LLM/2 eval) {wide['evaluated'] / wide['wall']:.1f} candidates/s")
    print(
        f"overhead/target ratio   {overhead_ms / TARGET_MS:.2f}  "
        f"({'PASS' if overhead_ms <= TARGET_MS else 'MISS'})"
    )


if __name__ == "__main__":
    main()
