"""The live view at scale: a 10,000-program tree, API latency and first paint in Chromium.

Builds a synthetic archive (real schema, made by SqlArchive) with N programs, serves it
with uvicorn on loopback, times each API route over HTTP, then opens the page in headless
Chromium and times first paint (navigation start until every sent node is drawn).
Targets: first paint <= 2 s, full tree API <= 1 s.

    python benchmarks/ui_scale.py --n 10000
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "ui"))

from fixtures_ui import UiServer  # noqa: E402
from test_browser import _chrome  # noqa: E402

from cambrian.archive import ArchiveViews, SqlArchive  # noqa: E402
from cambrian.config import ArchiveConfig  # noqa: E402
from cambrian.ui import create_app  # noqa: E402

TARGET_PAINT_S = 2.0
TARGET_TREE_S = 1.0


def build(db: Path, n: int, seed: int = 0) -> str:
    """Write a run of ``n`` programs (half evaluated, half failed or rejected)."""
    SqlArchive(ArchiveConfig(), url=f"sqlite:///{db}", run_id="bench").ensure_run({})
    rng, now = random.Random(seed), time.time()
    conn = sqlite3.connect(db)
    programs, evaluations, elites, cells = [], [], [], {}
    for seq in range(1, n + 1):
        pid = f"{seq:012x}"
        parent = None if seq == 1 else rng.choice(elites[-200:])
        generation = 0 if parent is None else _GENS[parent] + 1
        _GENS[pid] = generation
        status = (
            "evaluated" if seq == 1 or rng.random() < 0.5 else rng.choice(["failed", "rejected"])
        )
        t = now - n + seq
        programs.append(
            (
                pid,
                "bench",
                seq,
                parent,
                seq % 4,
                generation,
                "c",
                pid,
                "[]",
                "m" + str(seq % 3),
                status,
                "" if status == "evaluated" else "timeout",
                t,
                t,
            )
        )
        if status == "evaluated":
            score = rng.random() + generation * 0.01
            evaluations.append((pid, "ok", score, "{}", "{}", "{}", 0, 0.1, "", "", t))
            elites.append(pid)
            key = (seq % 4, f"{rng.randrange(10)},{rng.randrange(10)}")
            if key not in cells or cells[key][1] < score:
                cells[key] = (pid, score)
    conn.executemany(f"insert into programs ({_PCOLS}) values ({','.join('?' * 14)})", programs)
    conn.executemany(
        f"insert into evaluations ({_ECOLS}) values ({','.join('?' * 11)})", evaluations
    )
    conn.executemany(
        "insert into cells (run_id, island, key, program_id, score) values ('bench', ?, ?, ?, ?)",
        [(island, key, pid, score) for (island, key), (pid, score) in cells.items()],
    )
    conn.commit()
    conn.close()
    return "bench"


_GENS: dict[str, int] = {}
_PCOLS = (
    'id, run_id, seq, parent_id, island, generation, "commit", tree, files_changed, '
    "model, status, reason, created_at, updated_at"
)
_ECOLS = (
    "program_id, status, score, metrics, features, artifacts, stage, duration_s, reason, "
    "output_tail, created_at"
)


def time_get(url: str, repeat: int = 5) -> tuple[float, int]:
    """Median seconds of ``repeat`` GETs and the body size in bytes."""
    times, size = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as response:
            size = len(response.read())
        times.append(time.perf_counter() - start)
    return statistics.median(times), size


def first_paint(url: str, expected: int) -> float:
    """Seconds from navigation start until the page has drawn ``expected`` nodes."""
    driver = _chrome()
    try:
        driver.get(url)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done = driver.execute_script(
                "const c = document.getElementById('node-count');"
                "return c && +c.dataset.count >= arguments[0] && window.__painted"
                " ? window.__painted : null;",
                expected,
            )
            if done:
                return done / 1000
            time.sleep(0.05)
        raise RuntimeError("the page never drew the tree")
    finally:
        driver.quit()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "archive.db"
        start = time.perf_counter()
        run_id = build(db, args.n)
        print(f"built {args.n} programs in {time.perf_counter() - start:.1f}s")
        views = ArchiveViews(f"sqlite:///{db}")
        with UiServer(create_app(views, {})) as ui:
            api = f"{ui.url}/api/runs/{run_id}"
            figures = {
                "tree (full)": time_get(f"{api}/tree"),
                "tree (delta)": time_get(f"{api}/tree?since={time.time() - 5}"),
                "cells": time_get(f"{api}/cells"),
                "series": time_get(f"{api}/series"),
                "version": time_get(f"{api}/version"),
                "program": time_get(f"{api}/programs/{2:012x}"),
            }
            for name, (seconds, size) in figures.items():
                print(f"  GET {name:<13} {seconds * 1000:8.1f} ms  {size / 1024:8.1f} KiB")
            sent = len(json.loads(urllib.request.urlopen(f"{api}/tree").read())["rows"])
            paint = first_paint(ui.url + "/", sent)
        print(f"  nodes sent {sent} of {args.n} (oldest failed/rejected culled)")
        print(f"  first paint {paint:.2f}s (target <= {TARGET_PAINT_S}s)")
        ok = paint <= TARGET_PAINT_S and figures["tree (full)"][0] <= TARGET_TREE_S
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
