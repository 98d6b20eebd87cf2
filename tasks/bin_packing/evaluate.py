"""Evaluator of the online bin-packing heuristic: prints one JSON result line.

Five fixed Weibull instances (FunSearch's OR-style benchmark: capacity 100, item sizes
from Weibull(shape 3, scale 45), rounded and clipped to [1, 100]) are generated from a
fixed seed. ``priority()`` runs only in a child process, which packs the items online
and prints the bin chosen for every item. This process then replays that assignment and
checks it is a real online packing: no bin overflows, bins open in order, and a new bin
opens only when no open bin had room. The score is minus the mean percentage of bins
used above the L1 lower bound ceil(sum(items) / capacity); 0 would be optimal.

The child is started through ``$CAMBRIAN_RUN``: cambrian's inner tier, where candidate
code has its own uid and cannot reach this process or its output. Run by hand
(``$CAMBRIAN_RUN`` unset), the child is a plain process.
"""

import json
import math
import os
import random
import shlex
import subprocess
import sys

CAPACITY = 100.0
INSTANCES = 5
ITEMS = 1000
SEED = 2023
# Mean excess (%) of the two classic heuristics on these instances; a test recomputes them.
BEST_FIT_PCT = 4.614
FIRST_FIT_PCT = 5.157
RUNNER = "import evaluate, json, solve, sys; print(json.dumps(evaluate.child(solve.priority)))"
CANDIDATE = shlex.split(os.environ.get("CAMBRIAN_RUN", ""))


def instances():
    """The fixed instances: lists of integral item sizes, as floats."""
    rng = random.Random(SEED)
    return [
        [float(min(100, max(1, round(rng.weibullvariate(45.0, 3.0))))) for _ in range(ITEMS)]
        for _ in range(INSTANCES)
    ]


def _choose(priority, item, fits, bins):
    """Index into ``fits`` of the bin with the highest valid priority (first on ties)."""
    scores = list(priority(item, [bins[i] for i in fits]))
    if len(scores) != len(fits):
        raise ValueError(f"priority returned {len(scores)} scores for {len(fits)} open bins")
    best, best_score = 0, -math.inf
    for k, raw in enumerate(scores):
        score = float(raw)
        if not math.isfinite(score):
            raise ValueError(f"priority returned a non-finite score {raw!r}")
        if score > best_score:
            best, best_score = k, score
    return best


def pack(items, priority):
    """Pack ``items`` online with ``priority``; return the bin index chosen for each item."""
    bins, chosen = [], []
    for item in items:
        fits = [i for i, room in enumerate(bins) if room >= item]
        if fits:
            target = fits[_choose(priority, item, fits, bins)]
        else:
            target = len(bins)
            bins.append(CAPACITY)
        bins[target] -= item
        chosen.append(target)
    return chosen


def child(priority):
    """Run in the child process: the assignment of every instance."""
    return [pack(items, priority) for items in instances()]


def best_fit(item, bins):
    """The baseline heuristic: the tightest bin wins."""
    return [-(b - item) for b in bins]


def first_fit(item, bins):
    """The other classic baseline: the oldest bin with room wins."""
    return [-float(i) for i in range(len(bins))]


def replay(items, chosen):
    """Check an assignment is an online packing; return (bins used, best-fit agreement).

    Raises:
        ValueError: Naming the first item placed where the online rules do not allow.
    """
    if not isinstance(chosen, list) or len(chosen) != len(items):
        raise ValueError(f"expected {len(items)} bin indices, got {str(chosen)[:80]}")
    bins, agree, choices = [], 0, 0
    for j, (item, target) in enumerate(zip(items, chosen, strict=True)):
        fits = [i for i, room in enumerate(bins) if room >= item]
        if type(target) is not int or not 0 <= target <= len(bins):
            raise ValueError(f"item {j}: bin index {target!r} is not an open or the next bin")
        if target == len(bins):
            if fits:
                raise ValueError(f"item {j}: opened a new bin while bin {fits[0]} had room")
            bins.append(CAPACITY)
        elif target not in fits:
            raise ValueError(f"item {j} (size {item:g}) overflows bin {target}")
        else:
            choices += 1
            agree += target == min(fits, key=lambda i: (bins[i], i))
        bins[target] -= item
    return len(bins), agree / choices if choices else 1.0


def excess_pct(items, used):
    """Percentage of bins used above the L1 bound ceil(sum / capacity)."""
    bound = math.ceil(sum(items) / CAPACITY)
    return (used - bound) / bound * 100.0


def mean_excess(cases, priority):
    """Mean excess (%) of a trusted heuristic over the instances, packed in this process."""
    used = [len(set(pack(items, priority))) for items in cases]
    return sum(excess_pct(items, n) for items, n in zip(cases, used, strict=True)) / len(cases)


def run_child():
    """Run ``solve.priority`` in a child; return its assignments or exit 1 with the reason."""
    argv = [*CANDIDATE, sys.executable, "-c", RUNNER]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=50)
    if run.returncode != 0:
        print(run.stderr[-3000:], file=sys.stderr)
        sys.exit(1)
    try:
        return json.loads(run.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        print(f"priority() output unreadable: {run.stdout[-500:]!r}", file=sys.stderr)
        sys.exit(1)


def main():
    cases = instances()
    assignments = run_child()
    if not isinstance(assignments, list) or len(assignments) != len(cases):
        print(f"expected {len(cases)} assignments, got {str(assignments)[:200]}", file=sys.stderr)
        sys.exit(1)
    used, agreement = [], []
    for k, (items, chosen) in enumerate(zip(cases, assignments, strict=True)):
        try:
            n, agree = replay(items, chosen)
        except ValueError as exc:
            print(f"instance {k}: invalid online packing: {exc}", file=sys.stderr)
            sys.exit(1)
        used.append(n)
        agreement.append(agree)
    bound = [math.ceil(sum(items) / CAPACITY) for items in cases]
    excess = sum(excess_pct(items, n) for items, n in zip(cases, used, strict=True)) / len(cases)
    feedback = (
        f"{sum(used)} bins for a lower bound of {sum(bound)}: excess {excess:.3f}% over the "
        f"L1 bound (best fit: {BEST_FIT_PCT}%, first fit: {FIRST_FIT_PCT}%; lower is better)"
    )
    print(
        json.dumps(
            {
                "score": -excess,
                "metrics": {
                    "valid": 1,
                    "bins_used": sum(used),
                    "lower_bound": sum(bound),
                    "excess_pct": excess,
                },
                "features": {"best_fit_agreement": sum(agreement) / len(agreement)},
                "artifacts": {"feedback": feedback},
            }
        )
    )


if __name__ == "__main__":
    main()
