"""A real vLLM server (CPU build) started by the run itself through `launch = "vllm"`."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

from conftest import TASKS
from fixtures_vllm import vllm_model  # noqa: F401 - a fixture
from test_serve import run_uses_server, start_serve, stop_serve

from cambrian.agent import Evolution, open_run


def test_three_iterations_against_a_launched_vllm(vllm_model, tmp_path: Path) -> None:  # noqa: F811
    python, model = vllm_model
    task = tmp_path / "task"
    shutil.copytree(TASKS / "demo_max", task)
    entry = {"name": str(model), "launch": "vllm", "launch_python": str(python), "max_tokens": 256}
    ctx = open_run(
        task,
        tmp_path / "run",
        extra={"llm": {"models": [entry]}},
        overrides=[
            "run.iterations=3",
            "run.max_proposals=12",
            'sandbox.backend="process"',
            "run.target_score=1e9",
        ],
    )
    server = ctx.servers[0]
    try:
        assert server.running and server.url.startswith("http://127.0.0.1:")
        reason = asyncio.run(Evolution(ctx).run())
        stats = ctx.archive.stats()
    finally:
        ctx.close()
    assert not server.running  # the run stopped the engine it started
    assert reason in ("iterations", "max_proposals")
    db = sqlite3.connect(tmp_path / "run" / "archive.db")
    calls = db.execute(
        "select model, count(*), sum(completion_tokens), sum(ok) from llm_calls group by model"
    ).fetchall()
    assert len(calls) == 1 and calls[0][0] == "openai/smollm2-135m-instruct"
    assert calls[0][1] >= 3 and calls[0][2] > 0 and calls[0][3] == calls[0][1]
    assert stats["evaluated"] + stats["by_status"]["rejected"] >= 3
    log = tmp_path / "run" / "smollm2-135m-instruct.log"
    assert log.exists() and log.stat().st_size > 0


def test_cambrian_serve_vllm_then_a_run_uses_it(vllm_model, tmp_path: Path) -> None:  # noqa: F811
    python, model = vllm_model
    proc, api_base, _ = start_serve(
        str(model),
        "--engine",
        "vllm",
        "--python",
        str(python),
        "--max-model-len",
        "4096",
        "--log",
        str(tmp_path / "vllm.log"),
        cwd=tmp_path,
    )
    try:
        assert run_uses_server(api_base, "openai/smol", tmp_path) >= 1
    finally:
        stop_serve(proc)
