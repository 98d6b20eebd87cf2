"""Framework overhead per candidate: wall time minus time inside the evaluator and the LLM.

Runs N candidates on a copy of the `cambrian init` task with an instant scripted model
(a real HTTP server on loopback) and a trivial shell evaluator, on the process sandbox.
The serial figure drives propose() and evaluate() strictly one after the other, so no LLM
call overlaps an evaluation and the subtraction is exact. Also prints candidates/s with
the loop's own concurrency.

    python benchmarks/overhead.py [--n 200]
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


def _open(n: int, concurrency: tuple[int, int], url: str, root: Path, name: str):
    task = _task(root / name)
    overrides = [
        f"run.iterations={n}",
        f"evaluator.command={json.dumps(TRIVIAL)}",
        f"run.proposal_concurrency={concurrency[0]}",
        f"run.eval_concurrency={concurrency[1]}",
        f"run.max_proposals={20 * n}",
        'sandbox.backend="process"',
    ]
    extra = {"llm": {"model": "openai/scripted", "api_base": url}}
    return open_run(task, root / f"run-{name}", extra=extra, overrides=overrides)


def _measure_serial(n: int, url: str, root: Path) -> dict[str, float]:
    ctx = _open(1, (1, 1), url, root, "serial")
    try:
        evolution = Evolution(ctx)
        asyncio.run(evolution.run())  # the initial program and one candidate, not timed
        llm_before = _llm_seconds(ctx.run_dir)
        start = time.perf_counter()
        evaluated, eval_s = asyncio.run(_serial_candidates(evolution, n))
        wall = time.perf_counter() - start
    finally:
        ctx.close()
    llm_s = _llm_seconds(ctx.run_dir) - llm_before
    return {"wall": wall, "evaluated": evaluated, "eval_s": eval_s, "llm_s": llm_s}


async def _serial_candidates(evolution: Evolution, n: int) -> tuple[int, float]:
    """n candidates, each proposed then evaluated before the next starts."""
    evaluated, eval_s = 0, 0.0
    while evaluated < n:
        program = await evolution.propose(0)
        if program is not None:
            eval_s += (await evolution.evaluate(program)).duration_s
            evaluated += 1
    return evaluated, eval_s


def _llm_seconds(run_dir: Path) -> float:
    db = sqlite3.connect(run_dir / "archive.db")
    try:
        return db.execute("select coalesce(sum(latency_s), 0) from llm_calls").fetchone()[0]
    finally:
        db.close()


def _measure_concurrent(n: int, url: str, root: Path) -> float:
    ctx = _open(n, (4, 2), url, root, "concurrent")
    try:
        start = time.perf_counter()
        asyncio.run(Evolution(ctx).run())
        return ctx.archive.stats()["evaluated"] / (time.perf_counter() - start)
    finally:
        ctx.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ScriptedLLMServer(mutate_numbers(0)) as server:
        serial = _measure_serial(args.n, server.url, Path(tmp))
        rate = _measure_concurrent(args.n, server.url, Path(tmp))
    n = serial["evaluated"]
    overhead_ms = 1000 * (serial["wall"] - serial["eval_s"] - serial["llm_s"]) / n
    print(f"candidates              {n} evaluated, strictly serial")
    print(f"serial wall             {serial['wall']:.2f} s  ({n / serial['wall']:.1f} cand/s)")
    print(f"  inside evaluator      {1000 * serial['eval_s'] / n:.2f} ms/candidate")
    print(f"  inside LLM            {1000 * serial['llm_s'] / n:.2f} ms/call-weighted candidate")
    print(f"  framework overhead    {overhead_ms:.2f} ms/candidate (target <= {TARGET_MS:.0f})")
    print(f"concurrent (4 LLM/2 eval) {rate:.1f} candidates/s")
    print(
        f"overhead/target ratio   {overhead_ms / TARGET_MS:.2f}  "
        f"({'PASS' if overhead_ms <= TARGET_MS else 'MISS'})"
    )


if __name__ == "__main__":
    main()
