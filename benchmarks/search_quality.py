"""Search quality per LLM call: cambrian against random- and greedy-parent baselines.

Each run is a real evolution of a shipped task (tasks/NAME) with a real model, in a fresh
temporary run folder. The model server starts once for the whole benchmark. The budget
is LLM calls: a run gets ``run.max_proposals = --calls`` (and as many iterations), and a
proposal is one call plus at most ``prompt.repair_turns`` repair calls (duplicates are
capped apart), so a run may make more calls than the budget; every figure below is read
from the archive by call index (all calls: propose, repair, meta, failed) and the
headline "best" is the best program found within the first ``--calls`` calls.

Arms: cambrian (the defaults), random (uniform parent over all evaluated programs),
greedy (always the best program), and the ablations diff_only, region_only, no_line, no_meta,
no_repair, adaptive (ucb operators) and compact (compact templates).

    python benchmarks/search_quality.py [--model local:qwen2.5-coder-0.5b]
        [--tasks circle_packing,bin_packing] [--calls 40] [--seeds 0,1,2]
        [--arms cambrian,random,greedy] [--out results.jsonl [--resume]]
    python benchmarks/search_quality.py --model scripted --calls 4 --seeds 0   # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from cambrian.agent import Evolution, open_run
from cambrian.llm import OfflineModelServer, ScriptedLLMServer, mutate_numbers

TASKS = Path(__file__).resolve().parents[1] / "tasks"
CHECKPOINTS = (10, 25, 50, 100)
BASELINES = ("random", "greedy")
_ZERO = ("operators.region=0", "operators.rewrite=0", "operators.crossover=0", "operators.line=0")
ARMS: dict[str, tuple[str, ...]] = {
    "cambrian": (),
    "random": ('archive.selection="random"',),
    "greedy": ('archive.selection="greedy"',),
    "diff_only": (*_ZERO, "operators.diff=1"),
    "region_only": (
        "operators.diff=0",
        "operators.rewrite=0",
        "operators.crossover=0",
        "operators.line=0",
    ),
    "no_line": ("operators.line=0",),
    "no_meta": ("meta.interval=0",),
    "no_repair": ("prompt.repair_turns=0",),
    "adaptive": ('operators.adaptive="ucb"',),
    "compact": ('prompt.templates="compact"',),
}
Endpoint = tuple[str, str | None, list[str]]  # litellm name, api_base, model settings


# --- the model --------------------------------------------------------------------------
@contextmanager
def shared_model(args: argparse.Namespace) -> Iterator[Endpoint | None]:
    """The one model server of the benchmark (None: a scripted server per run)."""
    if args.model == "scripted":
        yield None
    elif args.model.startswith("local:"):
        server = OfflineModelServer(args.model)
        started = time.perf_counter()
        server.start()
        print(f"model {args.model} ready in {time.perf_counter() - started:.1f} s", flush=True)
        try:
            yield server.model, server.url, local_settings(server.local)
        finally:
            server.stop()
    else:
        yield args.model, args.api_base, []


def local_settings(model: Any) -> list[str]:
    """What `cambrian run --model local:...` sets for the model, as overrides (arms win)."""
    weights = [f"operators.{name}={weight}" for name, weight in model.operators]
    return [f"llm.max_tokens={model.max_tokens}", "llm.prefill=true", *weights]


@contextmanager
def endpoint(shared: Endpoint | None, seed: int) -> Iterator[Endpoint]:
    """The shared server, or a fresh deterministic mutate-numbers server for this seed."""
    if shared is not None:
        yield shared
        return
    with ScriptedLLMServer(mutate_numbers(seed)) as server:
        yield "openai/scripted", server.url, []


# --- one run ----------------------------------------------------------------------------
def run_overrides(arm: str, seed: int, args: argparse.Namespace) -> list[str]:
    return [
        f"run.seed={seed}",
        f"run.iterations={args.calls}",
        f"run.max_proposals={args.calls}",
        f"run.proposal_concurrency={args.concurrency}",
        f"run.eval_concurrency={args.concurrency}",
        f"sandbox.backend={json.dumps(args.sandbox)}",
        *ARMS[arm],
    ]


def one_run(task: str, arm: str, seed: int, model: Endpoint, args: argparse.Namespace) -> dict:
    """Evolve ``task`` under ``arm`` for about ``args.calls`` LLM calls; return its figures."""
    name, api_base, settings = model
    extra = {"llm": {"model": name, **({"api_base": api_base} if api_base else {})}}
    overrides = [*settings, *run_overrides(arm, seed, args)]
    with tempfile.TemporaryDirectory(prefix="cambrian-sq-") as tmp:
        ctx = open_run(TASKS / task, Path(tmp) / "run", extra=extra, overrides=overrides)
        try:
            evolution = Evolution(ctx)
            started = time.perf_counter()
            stop = asyncio.run(evolution.run())
            wall = time.perf_counter() - started
            maximize = ctx.config.evaluator.direction == "maximize"
            stats, operators = ctx.archive.stats(), ctx.archive.operator_stats()
            curve = read_curve(ctx.run_dir / "archive.db", ctx.run_id, maximize)
            curve["rejections"] = rejections(ctx.run_dir / "archive.db", ctx.run_id)
        finally:
            ctx.close()
    record = {"task": task, "arm": arm, "seed": seed, "model": args.model, "budget": args.calls}
    record["overrides"] = overrides
    record |= {"stop_reason": stop, "error": evolution.error, "wall_s": wall}
    return record | figures(stats, operators, curve, maximize, args.calls, wall)


def read_curve(db_path: Path, run_id: str, maximize: bool) -> dict[str, Any]:
    """Per-call figures: the best score after each LLM call, initial score, validity."""
    db = sqlite3.connect(db_path)
    try:
        calls = db.execute(
            "select program_id from llm_calls where run_id = ? order by id", (run_id,)
        ).fetchall()
        rows = db.execute(
            "select p.id, p.parent_id, e.status, e.score from programs p "
            "join evaluations e on e.program_id = p.id where p.run_id = ?",
            (run_id,),
        ).fetchall()
    finally:
        db.close()
    last_call = {pid: i + 1 for i, (pid,) in enumerate(calls) if pid is not None}
    found: dict[int, list[float]] = {}  # call index after which a program exists -> scores
    initial, children, valid = None, 0, 0
    for pid, parent, status, score in rows:
        ok = status == "ok" and score is not None
        if parent is None:
            initial = score if ok else None
        else:
            children, valid = children + 1, valid + ok
        if ok:
            at = 0 if parent is None else last_call.get(pid, len(calls))
            found.setdefault(at, []).append(score)
    by_call = best_by_call(found, len(calls), maximize)
    return {"initial": initial, "best_by_call": by_call, "children": children, "valid": valid}


def rejections(db_path: Path, run_id: str) -> dict[str, int]:
    """Rejected children by reason (its first words), most frequent first."""
    db = sqlite3.connect(db_path)
    try:
        rows = db.execute(
            "select substr(reason, 1, 60), count(*) from programs where run_id = ? "
            "and status = 'rejected' group by 1 order by 2 desc",
            (run_id,),
        ).fetchall()
    finally:
        db.close()
    return dict(rows)


def best_by_call(found: dict[int, list[float]], calls: int, maximize: bool) -> list:
    """Index k: the best score among programs that exist after k calls (None: none yet)."""
    better = max if maximize else min
    out, best = [], None
    for k in range(calls + 1):
        scores = found.get(k, []) + ([] if best is None else [best])
        best = better(scores) if scores else None
        out.append(best)
    return out


def figures(stats, operators, curve, maximize: bool, budget: int, wall: float) -> dict:
    """The figures of one run, as stored in the JSON line."""
    by_call = curve["best_by_call"]  # index k: best after k calls (0: the initial program)
    calls = len(by_call) - 1
    best = by_call[min(budget, calls)]
    initial = curve["initial"]
    sign = 1 if maximize else -1
    improvement = None if best is None or initial is None else sign * (best - initial)
    return {
        "calls": calls,
        "replies": stats["replies"],
        "accepted": stats["accepted"],
        "acceptance": stats["acceptance"],
        "evaluated": curve["children"],
        "valid_share": curve["valid"] / curve["children"] if curve["children"] else None,
        "duplicates": stats["duplicates"],
        "initial": initial,
        "best": best,
        "best_final": by_call[-1],
        "improvement": improvement,
        "improved": bool(improvement and improvement > 0),
        "best_at": {str(k): by_call[k] for k in (*CHECKPOINTS, budget) if k <= calls},
        "best_by_call": by_call,
        "calls_per_min": 60 * calls / wall if wall > 0 else None,
        "prompt_tokens": stats["prompt_tokens"],
        "completion_tokens": stats["completion_tokens"],
        "rejections": curve["rejections"],
        "operators": {op: row["successes"] for op, row in sorted(operators.items())},
        "operator_children": {op: row["pulls"] for op, row in sorted(operators.items())},
    }


# --- the report -------------------------------------------------------------------------
def mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def fmt(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(task: str, by_arm: dict[str, list[dict]], budget: int) -> None:
    print(f"\n{task}: {budget} LLM calls per run (best within them), mean over seeds")
    head = f"{'arm':<12} {'best':>9} {'improvement':>11} {'improved':>8}"
    print(f"{head} {'acceptance':>10} {'valid':>6} {'calls':>6} {'calls/min':>9} {'wall s':>7}")
    for arm, runs in by_arm.items():
        improved = f"{sum(r['improved'] for r in runs)}/{len(runs)}"
        print(
            f"{arm:<12} {fmt(mean([r['best'] for r in runs])):>9}"
            f" {fmt(mean([r['improvement'] for r in runs]), '+.4f'):>11} {improved:>8}"
            f" {fmt(mean([r['acceptance'] for r in runs]), '.2f'):>10}"
            f" {fmt(mean([r['valid_share'] for r in runs]), '.2f'):>6}"
            f" {fmt(mean([r['calls'] for r in runs]), '.1f'):>6}"
            f" {fmt(mean([r['calls_per_min'] for r in runs]), '.2f'):>9}"
            f" {fmt(mean([r['wall_s'] for r in runs]), '.0f'):>7}"
        )
    print_operators(by_arm)


def print_operators(by_arm: dict[str, list[dict]]) -> None:
    print("improving children per operator (summed over seeds; improved/children)")
    for arm, runs in by_arm.items():
        ops = sorted({op for r in runs for op in r["operator_children"]})
        cells = [
            f"{op} {sum(r['operators'].get(op, 0) for r in runs)}/"
            f"{sum(r['operator_children'].get(op, 0) for r in runs)}"
            for op in ops
        ]
        dups = sum(r["duplicates"] for r in runs)
        print(f"  {arm:<12} {', '.join(cells) or '-'}; duplicates {dups}")
        reasons = Counter()
        for r in runs:
            reasons.update(r["rejections"])
        for reason, count in reasons.most_common(2):
            print(f"  {'':<12} rejected {count}x: {reason}")


def print_curves(by_arm: dict[str, list[dict]], budget: int) -> None:
    most = max(r["calls"] for runs in by_arm.values() for r in runs)
    ks = sorted({k for k in CHECKPOINTS if k <= most} | {budget})
    print("best after k calls (mean over the seeds that reached k; [n] when not all did)")
    print(f"{'arm':<12} " + " ".join(f"{'k=' + str(k):>12}" for k in ks))
    for arm, runs in by_arm.items():
        cells = []
        for k in ks:
            reached = [r["best_at"][str(k)] for r in runs if str(k) in r["best_at"]]
            note = "" if len(reached) == len(runs) else f"[{len(reached)}]"
            cells.append(f"{fmt(mean(reached)) + note:>12}")
        print(f"{arm:<12} " + " ".join(cells))


def print_verdicts(by_arm: dict[str, list[dict]]) -> None:
    if "cambrian" not in by_arm:
        return
    ours = mean([r["improvement"] for r in by_arm["cambrian"]])
    for base in (b for b in BASELINES if b in by_arm):
        theirs = mean([r["improvement"] for r in by_arm[base]])
        if ours is None or theirs is None:
            print(f"cambrian vs {base}: no valid score to compare")
            continue
        ratio = f"{ours / theirs:.2f}x" if theirs > 0 else "n/a: baseline did not improve"
        print(
            f"cambrian vs {base}: {ours - theirs:+.4f} mean improvement "
            f"(cambrian {ours:+.4f}, {base} {theirs:+.4f}; ratio {ratio})"
        )


def report(records: list[dict], budget: int) -> None:
    for task in dict.fromkeys(r["task"] for r in records):
        by_arm: dict[str, list[dict]] = {}
        for r in records:
            if r["task"] == task:
                by_arm.setdefault(r["arm"], []).append(r)
        print_table(task, by_arm, budget)
        print_curves(by_arm, budget)
        print_verdicts(by_arm)


# --- main -------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="local:qwen2.5-coder-0.5b", help="or scripted")
    parser.add_argument("--api-base", default=None, help="for a litellm --model name")
    parser.add_argument("--tasks", default="circle_packing,bin_packing")
    parser.add_argument("--calls", type=int, default=40, help="LLM calls per run")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--arms", default="cambrian,random,greedy", help=", ".join(ARMS))
    parser.add_argument("--sandbox", default="process")
    parser.add_argument("--out", type=Path, default=None, help="append one JSON line per run")
    parser.add_argument(
        "--resume", action="store_true", help="keep the runs already in --out; run the rest"
    )
    parser.add_argument("--concurrency", type=int, default=1, help="proposals and evaluations")
    args = parser.parse_args(argv)
    args.tasks = [t for t in args.tasks.split(",") if t]
    args.arms = [a for a in args.arms.split(",") if a]
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    unknown = [a for a in args.arms if a not in ARMS] + [
        t for t in args.tasks if not (TASKS / t / "cambrian.toml").is_file()
    ]
    if unknown or args.calls < 1 or args.concurrency < 1 or not args.seeds:
        parser.error(f"bad --arms/--tasks/--calls/--concurrency/--seeds {unknown or ''}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    records = kept_records(args)
    done = {(r["task"], r["arm"], r["seed"]) for r in records}
    todo = [
        (task, arm, seed)
        for task in args.tasks
        for seed in args.seeds  # seed-major: a benchmark cut short still compares the arms
        for arm in args.arms
        if (task, arm, seed) not in done
    ]
    if records:
        print(f"{len(records)} runs kept from {args.out}, {len(todo)} to run", flush=True)
    with shared_model(args) if todo else nullcontext() as shared:
        for task, arm, seed in todo:
            with endpoint(shared, seed) as model:
                record = one_run(task, arm, seed, model, args)
            records.append(record)
            if args.out is not None:
                with args.out.open("a") as out:
                    out.write(json.dumps(record) + "\n")
            print(
                f"{task} {arm} seed {seed}: best {fmt(record['best'])} "
                f"({fmt(record['improvement'], '+.4f')}), {record['calls']} calls, "
                f"{record['wall_s']:.0f} s, stop {record['stop_reason']}",
                flush=True,
            )
    report(records, args.calls)
    return 0


def kept_records(args: argparse.Namespace) -> list[dict]:
    """With ``--resume``: the runs of ``--out`` made with this model and call budget."""
    if not args.resume or args.out is None or not args.out.is_file():
        return []
    lines = [json.loads(line) for line in args.out.read_text().splitlines() if line.strip()]
    return [
        r
        for r in lines
        if r["model"] == args.model
        and r.get("budget") == args.calls
        and r["task"] in args.tasks
        and r["arm"] in args.arms
        and r["seed"] in args.seeds
    ]


if __name__ == "__main__":
    sys.exit(main())
