"""Consistency under faults: SIGKILL `cambrian run` at random moments, resume, check invariants.

SQLite: one worker killed 20 times. PostgreSQL: 4 concurrent workers sharing one archive
and one lineage repository, killed and restarted at random for a while.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cambrian_cmd, need_engine, scrubbed_env
from sqlalchemy import create_engine, text

from cambrian.archive import cell_key
from cambrian.config import FeatureBins
from cambrian.llm import ScriptedLLMServer, mutate_numbers

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "archive"))
from fixtures_postgres import new_database, pg_cluster  # noqa: E402, F401, F811 - session fixture

EVALUATOR = """
import json, time, uuid, subprocess, sys
time.sleep(0.05)
out = subprocess.run([sys.executable, "-c", "import solve; print(solve.area())"],
                     capture_output=True, text=True)
if out.returncode:
    sys.exit(out.stderr)
score = float(out.stdout)
print(json.dumps({"score": score, "metrics": {"token": uuid.uuid4().hex},
                  "features": {"x": abs(score) % 10}}))
"""
AXIS = {"x": FeatureBins(min=0, max=10, bins=5)}


def _start(task: Path, run_dir: Path, llm: str, iterations: int, *sets: str) -> subprocess.Popen:
    cmd = cambrian_cmd(
        "run", str(task), "--run-dir", str(run_dir), "--iterations", str(iterations),
        "--model", "openai/scripted", "--api-base", llm, "-q", "--sandbox", "process",
        "--set", "run.eval_concurrency=2", "--set", "run.proposal_concurrency=2",
        "--set", "archive.islands=2", "--set", "archive.features.x={min=0,max=10,bins=5}",
        *[arg for s in sets for arg in ("--set", s)],
    )  # fmt: skip
    return subprocess.Popen(
        cmd, env=scrubbed_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip


def _kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _git(run_dir: Path, *args: str) -> str:
    cmd = ["git", "--git-dir", str(run_dir / "lineage.git"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()


def check_invariants(url: str, run_dir: Path, iterations: int) -> None:
    """Cells hold the best of their programs; nothing lost or doubled; lineage is right."""
    engine = create_engine(url)
    with engine.connect() as db:
        programs = {r.id: r for r in db.execute(text("select * from programs"))}
        evals = {r.program_id: r for r in db.execute(text("select * from evaluations"))}
        cells = list(db.execute(text("select * from cells")))
        moved = list(db.execute(text("select * from migrations")))
    engine.dispose()
    assert not moved  # no migration configured: a cell only holds its own island's programs
    statuses = {p.status for p in programs.values()}
    assert not statuses & {"proposed", "evaluating", "interrupted"}, statuses
    children = [pid for pid in evals if programs[pid].parent_id is not None]
    assert len(children) >= iterations  # none lost (extra ones: workers finishing in flight)
    tokens = [json.loads(e.metrics)["token"] for e in evals.values() if e.status == "ok"]
    assert len(tokens) == len(set(tokens))  # no evaluation stored twice
    best: dict[tuple[int, str], float] = {}
    for pid, e in evals.items():
        if e.status == "ok":
            key = (programs[pid].island, cell_key(json.loads(e.features), AXIS))
            best[key] = max(best.get(key, float("-inf")), e.score)
    assert {(c.island, c.key): c.score for c in cells} == best
    for cell in cells:
        assert evals[cell.program_id].score == cell.score
    for pid, p in programs.items():
        if not p.commit:
            continue
        assert _git(run_dir, "rev-parse", f"refs/cambrian/programs/{pid}") == p.commit
        if p.parent_id is not None:
            parents = _git(run_dir, "rev-list", "--parents", "-n1", p.commit).split()[1:]
            assert parents == [programs[p.parent_id].commit]


def _pending(url: str) -> int:
    """Programs committed but not evaluated (orphans of killed workers)."""
    engine = create_engine(url)
    try:
        with engine.connect() as db:
            query = (
                "select count(*) from programs"
                " where status in ('proposed', 'evaluating', 'interrupted')"
            )
            return db.execute(text(query)).scalar()
    finally:
        engine.dispose()


def _evaluated(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as db:
            return db.execute(text("select coalesce(max(evaluated), 0) from runs")).scalar()
    except Exception:  # noqa: BLE001 - the tables may not exist yet
        return 0
    finally:
        engine.dispose()


@pytest.mark.timeout(300)
def test_twenty_sigkills_on_sqlite(scaffold_task: Path, tmp_path: Path) -> None:
    (scaffold_task / "evaluate.py").write_text(EVALUATOR)
    run_dir, rng, iterations = tmp_path / "run", random.Random(4), 40
    url = f"sqlite:///{run_dir / 'archive.db'}"
    with ScriptedLLMServer(mutate_numbers(seed=3)) as server:
        for _ in range(20):
            proc = _start(scaffold_task, run_dir, server.url, iterations)
            time.sleep(rng.uniform(1.5, 4.0))  # start-up takes ~1.5 s: kill during the loop
            if proc.poll() is None:
                _kill(proc)
        final = _start(scaffold_task, run_dir, server.url, iterations)
        _, stderr = final.communicate(timeout=200)
        assert final.returncode == 0, stderr.decode()
    check_invariants(url, run_dir, iterations)


@pytest.mark.timeout(400)
def test_four_workers_on_postgresql(scaffold_task: Path, tmp_path: Path, pg_cluster) -> None:  # noqa: F811
    need_engine(pg_cluster is not None, "PostgreSQL (initdb, pg_ctl, psycopg)")
    (scaffold_task / "evaluate.py").write_text(EVALUATOR)
    url = new_database(pg_cluster, f"faults{os.getpid()}")
    run_dir, rng = tmp_path / "shared", random.Random(5)
    seconds = float(os.environ.get("CAMBRIAN_FAULT_PG_S", "150"))
    sets = (f'archive.url="{url}"', "archive.lease_s=3")
    with ScriptedLLMServer(mutate_numbers(seed=5)) as server:
        start = lambda: _start(scaffold_task, run_dir, server.url, 10_000, *sets)  # noqa: E731
        workers = [start()]
        while _evaluated(url) < 1:  # the first worker creates the run and its root
            assert workers[0].poll() is None, workers[0].stderr.read().decode()
            time.sleep(0.2)
        workers += [start() for _ in range(3)]
        end, kills = time.time() + seconds, 0
        while time.time() < end:
            time.sleep(rng.uniform(2.0, 6.0))
            victim = rng.randrange(4)
            _kill(workers[victim])
            workers[victim], kills = start(), kills + 1
        for proc in workers:
            _kill(proc)
        done, orphans = _evaluated(url), _pending(url)
        # the last worker re-evaluates every orphan of the killed ones, then adds two
        target = done + orphans + 2
        final = _start(scaffold_task, run_dir, server.url, target, *sets)
        _, stderr = final.communicate(timeout=180)
        assert final.returncode == 0, stderr.decode()
    assert kills >= 10 and done >= 20
    check_invariants(url, run_dir, target)
