"""SIGKILL of `cambrian run` mid-run, then resume: nothing lost, nothing evaluated twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from conftest import cambrian_cmd, scrubbed_env, sigint_default

from cambrian.llm import ScriptedLLMServer, mutate_numbers

SLOW_EVALUATOR = """
import json, time, uuid, subprocess, sys
time.sleep(0.4)
out = subprocess.run([sys.executable, "-c", "import solve; print(solve.area())"],
                     capture_output=True, text=True)
if out.returncode:
    sys.exit(out.stderr)
print(json.dumps({"score": float(out.stdout), "metrics": {"token": uuid.uuid4().hex}}))
"""


def _evaluations(db_path: Path) -> dict[str, tuple[str, str]]:
    db = sqlite3.connect(db_path, timeout=30)
    try:
        rows = db.execute("select program_id, status, metrics from evaluations").fetchall()
    except sqlite3.OperationalError:  # the run has not created its tables yet
        rows = []
    finally:
        db.close()
    return {pid: (status, metrics) for pid, status, metrics in rows}


def _start(task: Path, run_dir: Path, url: str) -> subprocess.Popen:
    cmd = cambrian_cmd(
        "run",
        str(task),
        "--run-dir",
        str(run_dir),
        "--iterations",
        "12",
        "--model",
        "openai/scripted",
        "--api-base",
        url,
        "--set",
        "run.eval_concurrency=2",
        "--set",
        "run.proposal_concurrency=2",
    )
    return subprocess.Popen(
        cmd,
        env=scrubbed_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def test_sigkill_then_resume(scaffold_task: Path, tmp_path: Path) -> None:
    (scaffold_task / "evaluate.py").write_text(SLOW_EVALUATOR)
    run_dir = tmp_path / "run"
    db_path = run_dir / "archive.db"
    with ScriptedLLMServer(mutate_numbers(seed=7)) as server:
        proc = _start(scaffold_task, run_dir, server.url)
        deadline = time.time() + 120
        while time.time() < deadline:
            if db_path.exists() and len(_evaluations(db_path)) >= 4:
                break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        before = _evaluations(db_path)
        assert 4 <= len(before) < 13
        resumed = _start(scaffold_task, run_dir, server.url)
        _, stderr = resumed.communicate(timeout=240)
        assert resumed.returncode == 0, stderr.decode()
        assert b"resuming run" in stderr
    after = _evaluations(db_path)
    for program_id, row in before.items():
        assert after[program_id] == row  # not re-evaluated: same result token
    db = sqlite3.connect(db_path)
    statuses = dict(db.execute("select status, count(*) from programs group by status"))
    candidates = db.execute(
        "select count(*) from evaluations e join programs p on p.id = e.program_id "
        "where p.parent_id is not null"
    ).fetchone()[0]
    assert candidates == 12  # exactly the iterations asked for: none lost, none extra
    assert not {"proposed", "evaluating", "interrupted"} & set(statuses)
    tokens = [json.loads(m)["token"] for s, m in after.values() if s == "ok"]
    assert len(tokens) == len(set(tokens))


SLEEPY_EVALUATOR = """
import json, time
time.sleep(4)
print(json.dumps({"score": 1.0}))
"""


def _status_counts(db_path: Path) -> dict[str, int]:
    if not db_path.exists():
        return {}
    db = sqlite3.connect(db_path, timeout=30)
    try:
        return dict(db.execute("select status, count(*) from programs group by status"))
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()


def _processes_in(folder: Path) -> list[int]:
    """Processes whose working directory lies under ``folder``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cwd").readlink().is_relative_to(folder):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_ctrl_c_is_graceful_and_resumable(scaffold_task: Path, tmp_path: Path) -> None:
    (scaffold_task / "evaluate.py").write_text(SLEEPY_EVALUATOR)
    run_dir = tmp_path / "run"
    cmd = cambrian_cmd(
        "run",
        str(scaffold_task),
        "--run-dir",
        str(run_dir),
        "--iterations",
        "2",
        "--model",
        "openai/none",
        "--api-base",
        "http://127.0.0.1:9/v1",
        "--sandbox",
        "process",
    )
    proc = subprocess.Popen(
        cmd,
        env=scrubbed_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_default,
    )
    deadline = time.time() + 60
    while time.time() < deadline and not _processes_in(run_dir / "work"):
        time.sleep(0.05)
    assert _processes_in(run_dir / "work")  # the candidate is running
    assert _status_counts(run_dir / "archive.db").get("evaluating") == 1
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert f"resume with: cambrian run --run-dir {run_dir}" in stderr
    counts = _status_counts(run_dir / "archive.db")
    assert counts["interrupted"] == 1 and counts.get("evaluating", 0) == 0
    time.sleep(0.2)
    assert not _processes_in(run_dir / "work")  # the candidate was killed
    # resume evaluates the interrupted program again, from the run's pristine evaluator
    with ScriptedLLMServer(mutate_numbers(seed=1)) as server:
        done = subprocess.run(
            cambrian_cmd("run", "--run-dir", str(run_dir), "--api-base", server.url),
            env=scrubbed_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    counts = _status_counts(run_dir / "archive.db")
    assert counts.get("interrupted", 0) == 0 and counts.get("evaluated") == 3, counts
