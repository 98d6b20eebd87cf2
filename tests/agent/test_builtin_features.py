"""Built-in MAP-Elites features computed by the agent, and `cambrian best --pareto`."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
from pathlib import Path

from conftest import cambrian_cmd, scrubbed_env

from cambrian.agent import Evolution, open_run
from cambrian.llm import ScriptedLLMServer, mutate_numbers


def test_builtin_features_and_the_pareto_front(scaffold_task: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with ScriptedLLMServer(mutate_numbers(seed=11)) as server:
        ctx = open_run(
            scaffold_task,
            run_dir,
            extra={"llm": {"model": "openai/scripted", "api_base": server.url}},
            overrides=[
                "run.iterations=8",
                'sandbox.backend="process"',
                "archive.features.loc={min=0, max=40, bins=4}",
                "archive.features.lines_changed={min=0, max=4, bins=4}",
                'archive.objectives={score="maximize", height="minimize"}',
            ],
        )
        try:
            asyncio.run(Evolution(ctx).run())
        finally:
            ctx.close()
    db = sqlite3.connect(run_dir / "archive.db")
    rows = db.execute(
        "select p.id, p.parent_id, e.features, e.score, e.metrics, e.status from programs p "
        "join evaluations e on e.program_id = p.id"
    ).fetchall()
    for _, parent_id, features, _, _, _ in rows:
        features = json.loads(features)
        assert features["loc"] > 0  # non-blank lines of solve.py
        assert features["lines_changed"] == (0.0 if parent_id is None else 2.0)  # one line swapped
    ok = [
        (pid, score, json.loads(metrics)["height"])
        for pid, _, _, score, metrics, status in rows
        if status == "ok"
    ]
    done = subprocess.run(
        cambrian_cmd("best", "--pareto", "--run-dir", str(run_dir)),
        capture_output=True,
        text=True,
        env=scrubbed_env(),
    )
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0] for line in done.stdout.splitlines() if line.strip()}

    def dominated(a: tuple) -> bool:
        return any(b[1] >= a[1] and b[2] <= a[2] and (b[1] > a[1] or b[2] < a[2]) for b in ok)

    front = {pid for pid, score, height in ok if not dominated((pid, score, height))}
    assert front and {pid[:12] for pid in front} == {pid[:12] for pid in listed}
