"""Whole runs on a local Ray cluster: same results as locally, head loss, two controllers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cambrian_cmd, need_engine, scrubbed_env
from fixtures_ray import ray_available, start_cluster
from sqlalchemy import create_engine, text
from test_faults import EVALUATOR, _evaluated, _pending, check_invariants

from cambrian.llm import ScriptedLLMServer, mutate_numbers

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "archive"))
from fixtures_postgres import new_database, pg_cluster  # noqa: E402, F401, F811 - session fixture

NODE = ('sandbox.ray.node_ip="127.0.0.1"', 'sandbox.ray.node_backend="process"')


def _cmd(task: Path, run_dir: Path, llm: str, iterations: int, *extra: str) -> list[str]:
    sets = [arg for s in (*NODE, "run.eval_concurrency=4") for arg in ("--set", s)]
    return cambrian_cmd(
        "run", str(task), "--run-dir", str(run_dir), "--iterations", str(iterations),
        "--model", "openai/scripted", "--api-base", llm, "-q", *sets, *extra,
    )  # fmt: skip


def _rows(run_dir: Path, url: str | None = None) -> list[dict]:
    """Every evaluated program with its evaluation, in creation order."""
    engine = create_engine(url or f"sqlite:///{run_dir / 'archive.db'}")
    query = (
        "select p.id, p.island, p.parent_id, e.status, e.score, e.metrics, e.reason"
        " from programs p join evaluations e on e.program_id = p.id order by p.created_at"
    )
    with engine.connect() as db:
        rows = [dict(row._mapping) for row in db.execute(text(query))]
    engine.dispose()
    return rows


def _sandbox_identity(run_dir: Path) -> dict:
    engine = create_engine(f"sqlite:///{run_dir / 'archive.db'}")
    with engine.connect() as db:
        meta = db.execute(text("select meta from runs")).scalar()
    engine.dispose()
    return json.loads(meta)["sandbox"]


@pytest.fixture
def cluster(ray_cluster):
    need_engine(ray_cluster is not None, "Ray (pip install 'cambrian[ray]')")
    return ray_cluster


@pytest.mark.timeout(300)
def test_the_same_task_locally_and_on_ray(scaffold_task: Path, tmp_path: Path, cluster) -> None:
    results = {}
    for where, flags in (
        ("local", ["--sandbox", "process"]),
        ("ray", ["--ray-address", cluster.address]),
    ):
        run_dir = tmp_path / where
        with ScriptedLLMServer(mutate_numbers(seed=11)) as server:
            cmd = _cmd(scaffold_task, run_dir, server.url, 8, *flags)
            done = subprocess.run(
                cmd, env=scrubbed_env(), capture_output=True, text=True, timeout=240
            )
        assert done.returncode == 0, done.stderr[-3000:]
        results[where] = _rows(run_dir)
    local, ray = results["local"], results["ray"]
    assert _sandbox_identity(tmp_path / "ray")["backend"] == "ray"
    assert len(local) == len(ray) == 9  # the root and 8 children
    assert {tuple(row) for row in local} == {tuple(row) for row in ray}  # same columns
    assert local[0]["score"] == ray[0]["score"] and local[0]["metrics"] == ray[0]["metrics"]
    for rows in (local, ray):
        assert all(r["status"] in ("ok", "error") for r in rows)
        metrics = [json.loads(r["metrics"]) for r in rows if r["status"] == "ok"]
        assert all(set(m) == {"valid", "width", "height"} for m in metrics)


AXIS = ("--set", "archive.features.x={min=0,max=10,bins=5}")  # what check_invariants reads


@pytest.mark.timeout(400)
def test_a_lost_head_stops_the_run_clearly_and_it_resumes(
    scaffold_task: Path, tmp_path: Path
) -> None:
    need_engine(ray_available(), "Ray (pip install 'cambrian[ray]')")
    (scaffold_task / "evaluate.py").write_text(EVALUATOR.replace("sleep(0.05)", "sleep(0.5)"))
    run_dir, iterations = tmp_path / "run", 24
    first = start_cluster(nodes=1)
    with ScriptedLLMServer(mutate_numbers(seed=4)) as server:
        try:
            cmd = _cmd(scaffold_task, run_dir, server.url, iterations, *AXIS, "--ray-address",
                       first.address, "--set", "sandbox.ray.head_timeout_s=5")  # fmt: skip
            proc = subprocess.Popen(
                cmd, env=scrubbed_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            deadline = time.monotonic() + 120
            while len(_rows_if_any(run_dir)) < 4:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline
                time.sleep(0.3)
        finally:
            first.stop()  # the head and its node die at once
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 1
        assert "stopped: sandbox_error (lost the connection to the Ray cluster" in stdout
        assert "Traceback" not in stdout + stderr
        stopped_at = len(_rows_if_any(run_dir))
        assert stopped_at < iterations + 1
        second = start_cluster(nodes=1)  # a new cluster, at a new address
        try:
            cmd = _cmd(scaffold_task, run_dir, server.url, iterations, *AXIS,
                       "--ray-address", second.address)  # fmt: skip
            done = subprocess.run(
                cmd, env=scrubbed_env(), capture_output=True, text=True, timeout=240
            )
        finally:
            second.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    check_invariants(f"sqlite:///{run_dir / 'archive.db'}", run_dir, iterations)


def _rows_if_any(run_dir: Path) -> list[dict]:
    if not (run_dir / "archive.db").exists():
        return []
    try:
        return _rows(run_dir)
    except Exception:  # noqa: BLE001 - the tables may not exist yet
        return []


@pytest.mark.timeout(400)
def test_two_controllers_on_postgresql_with_ray_evaluations(
    scaffold_task: Path,
    tmp_path: Path,
    cluster,
    pg_cluster,  # noqa: F811
) -> None:
    need_engine(pg_cluster is not None, "PostgreSQL (initdb, pg_ctl, psycopg)")
    (scaffold_task / "evaluate.py").write_text(EVALUATOR)
    url = new_database(pg_cluster, f"ray{os.getpid()}")
    run_dir, iterations = tmp_path / "shared", 16
    common = ("--ray-address", cluster.address, "--set", f'archive.url="{url}"',
              "--set", "archive.islands=2", *AXIS)  # fmt: skip
    with ScriptedLLMServer(mutate_numbers(seed=8)) as server:
        first = subprocess.Popen(
            _cmd(scaffold_task, run_dir, server.url, iterations, *common, "--islands", "0"),
            env=scrubbed_env(), stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        while not (_has_tables(url) and _rows(run_dir, url)):  # the first creates the root
            assert first.poll() is None, first.stderr.read()
            time.sleep(0.3)
        second = subprocess.Popen(
            _cmd(scaffold_task, run_dir, server.url, iterations, *common, "--islands", "1"),
            env=scrubbed_env(), stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for proc in (first, second):
            _, stderr = proc.communicate(timeout=300)
            assert proc.returncode == 0, stderr[-3000:]
        children = [r for r in _rows(run_dir, url) if r["parent_id"] is not None]
        assert len(children) >= iterations
        assert {r["island"] for r in children} == {0, 1}
        # Proposals in flight when the other controller reached the target stay for a
        # later resume: one more controller evaluates them, then the run is whole.
        target = _evaluated(url) + _pending(url)
        final = _cmd(scaffold_task, run_dir, server.url, target, *common)
        done = subprocess.run(
            final, env=scrubbed_env(), capture_output=True, text=True, timeout=240
        )
        assert done.returncode == 0, done.stderr[-3000:]
    check_invariants(url, run_dir, target)


def _has_tables(url: str) -> bool:
    engine = create_engine(url)
    try:
        with engine.connect() as db:
            db.execute(text("select 1 from evaluations limit 1"))
        return True
    except Exception:  # noqa: BLE001 - not created yet
        return False
    finally:
        engine.dispose()
