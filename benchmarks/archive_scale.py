"""Archive at scale: fill with N synthetic programs, then time insert, sampling, inspirations.

Prints p50/p99 per operation and the controller's peak RSS, compares them with the
targets, and says PASS or MISS. ``--pg-url`` adds PostgreSQL; with ``--pg`` a private
cluster is started (initdb + pg_ctl, as the postgres user when root).

    python benchmarks/archive_scale.py --n 1000000 --pg
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import insert, update

from cambrian.archive import SqlArchive
from cambrian.archive._queries import CELLS, EVALUATIONS, PROGRAMS, RUNS
from cambrian.config import ArchiveConfig
from cambrian.types import EvalStatus, Evaluation, Program

POLICIES = ("uniform", "fitness", "power_law", "dgm", "thompson", "tournament", "greedy", "random")
AXES = {"x": {"min": 0, "max": 1, "bins": 20}, "y": {"min": 0, "max": 1, "bins": 20}}
TARGETS = {"sqlite": {"sample": 2.0, "insert": 5.0}, "postgresql": {"sample": 5.0, "insert": 5.0}}
RSS_TARGET_MB = 300
ISLANDS = 4
TAIL = "ok: all circles placed\n" * 12  # ~280 bytes of evaluator output


def _rows(
    start: int, count: int, run_id: str, rng: random.Random, cells: dict
) -> tuple[list, list]:
    """Synthetic program and evaluation rows ``start .. start+count``; updates ``cells``."""
    programs, evaluations = [], []
    now = time.time()
    for seq in range(start, start + count):
        pid = f"{seq:012x}"
        parent = None if seq == 1 else f"{rng.randrange(max(1, seq - 5000), seq):012x}"
        island, score = seq % ISLANDS, rng.random()
        x, y = rng.random(), rng.random()
        programs.append(
            {
                "id": pid,
                "run_id": run_id,
                "seq": seq,
                "parent_id": parent,
                "island": island,
                "generation": seq.bit_length(),
                "commit": uuid.uuid4().hex + "0" * 8,
                "tree": uuid.uuid4().hex + "0" * 8,
                "files_changed": '["solve.py"]',
                "model": "openai/gpt-4o-mini",
                "status": "evaluated",
                "reason": "",
                "created_at": now,
                "updated_at": now,
                "owner": None,
            }
        )
        evaluations.append(
            {
                "program_id": pid,
                "status": "ok",
                "score": score,
                "metrics": json.dumps({"valid": 1, "runtime_s": round(score, 4)}),
                "features": json.dumps({"x": x, "y": y}),
                "artifacts": '{"feedback": "fine"}',
                "stage": 1,
                "duration_s": 0.8,
                "reason": "",
                "output_tail": TAIL,
                "created_at": now,
            }
        )
        key = f"{min(int(x * 20), 19)},{min(int(y * 20), 19)}"
        if score > cells.get((island, key), ("", -1.0))[1]:
            cells[(island, key)] = (pid, score)
    return programs, evaluations


def fill(archive: SqlArchive, n: int, chunk: int = 20000) -> float:
    """Bulk-insert ``n`` evaluated programs and their cells; return seconds taken."""
    started, rng, cells = time.perf_counter(), random.Random(0), {}
    engine = archive._engines()[0]
    for start in range(1, n + 1, chunk):
        programs, evaluations = _rows(start, min(chunk, n + 1 - start), archive.run_id, rng, cells)
        with engine.begin() as conn:
            conn.execute(insert(PROGRAMS), programs)
            conn.execute(insert(EVALUATIONS), evaluations)
    cell_rows = [
        {"run_id": archive.run_id, "island": i, "key": k, "program_id": pid, "score": s}
        for (i, k), (pid, s) in cells.items()
    ]
    with engine.begin() as conn:
        conn.execute(insert(CELLS), cell_rows)
        conn.execute(update(RUNS).where(RUNS.c.id == archive.run_id).values(evaluated=n - 1))
    return time.perf_counter() - started


def timed(fn, count: int) -> tuple[float, float]:
    """p50 and p99 of ``fn()`` in milliseconds."""
    times = []
    for _ in range(count):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.99 * (len(times) - 1))]


def bench(kind: str, url: str, n: int, ops: int) -> list[tuple[str, float, float, float]]:
    """Fill one database and time every operation; return (name, p50, p99, target) rows."""
    run_id = uuid.uuid4().hex[:12]
    base = SqlArchive(ArchiveConfig(islands=ISLANDS, features=AXES), url=url, run_id=run_id)
    base.ensure_run({"benchmark": "archive_scale"})
    print(f"[{kind}] filling {n:,} programs ...", flush=True)
    print(f"[{kind}] filled in {fill(base, n):.1f} s", flush=True)
    target = TARGETS[kind]
    parent = base.sample_parent(0)
    rng = random.Random(1)

    children = []
    for _ in range(ops):  # proposals are stored first (untimed), as the loop does
        pid = uuid.uuid4().hex[:12]
        children.append(Program(pid, parent.id, 0, parent.generation + 1, "c" * 40, pid))
        base.new_program(children[-1])
    todo = iter(children)

    def insert_one() -> None:
        features = {"x": rng.random(), "y": rng.random()}
        base.add(next(todo), Evaluation(EvalStatus.OK, rng.random(), features=features))

    rows = [("insert (add an evaluation)", *timed(insert_one, ops), target["insert"])]
    for policy in POLICIES:
        archive = SqlArchive(
            ArchiveConfig(islands=ISLANDS, features=AXES, selection=policy), url=url, run_id=run_id
        )
        rows.append(
            (
                f"sample_parent {policy}",
                *timed(lambda a=archive: a.sample_parent(1), ops),
                target["sample"],
            )
        )
        archive.close()
    rows.append(
        (
            "inspirations (2 + 2 ancestors)",
            *timed(lambda: base.sample_inspirations(parent, 2, 1, 2), ops),
            target["sample"],
        )
    )
    base.close()
    return rows


def private_cluster() -> tuple[str, Path]:
    """Start a throwaway PostgreSQL 15 cluster on a free loopback port; return (url, folder)."""
    bin_dir, root = (
        Path("/usr/lib/postgresql/15/bin"),
        Path(tempfile.mkdtemp(prefix="cambrian-pg-")),
    )
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    subprocess.run(
        [*as_pg, str(bin_dir / "initdb"), "-D", str(root / "d"), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c shared_buffers=512MB"
    subprocess.run(
        [
            *as_pg,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(root / "d"),
            "-o",
            opts,
            "-l",
            str(root / "log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="programs to fill")
    parser.add_argument("--ops", type=int, default=300, help="timed calls per operation")
    parser.add_argument("--pg-url", help="PostgreSQL URL (postgresql+psycopg://...)")
    parser.add_argument("--pg", action="store_true", help="start a private PostgreSQL cluster")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cambrian-scale-"))
    targets = [("sqlite", f"sqlite:///{workdir / 'archive.db'}")]
    cluster = None
    if args.pg and not args.pg_url:
        args.pg_url, cluster = private_cluster()
    if args.pg_url:
        targets.append(("postgresql", args.pg_url))
    failed = 0
    try:
        for kind, url in targets:
            for name, p50, p99, target in bench(kind, url, args.n, args.ops):
                verdict = "PASS" if p50 <= target else "MISS"
                failed += verdict == "MISS"
                print(
                    f"[{kind}] {name:34s} p50 {p50:7.3f} ms  p99 {p99:7.3f} ms  "
                    f"target p50 <= {target} ms  {verdict}"
                )
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        verdict = "PASS" if rss <= RSS_TARGET_MB else "MISS"
        failed += verdict == "MISS"
        print(f"controller peak RSS {rss:.0f} MB  target <= {RSS_TARGET_MB} MB  {verdict}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if cluster is not None:
            as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
            subprocess.run(
                [
                    *as_pg,
                    "/usr/lib/postgresql/15/bin/pg_ctl",
                    "-D",
                    str(cluster / "d"),
                    "-m",
                    "fast",
                    "stop",
                ],
                capture_output=True,
            )
            shutil.rmtree(cluster, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
