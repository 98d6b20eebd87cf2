"""Helpers of the ui tests: a task with two feature axes, a finished run, a live server."""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
import time
from pathlib import Path

from conftest import SCAFFOLD

from cambrian.agent import Evolution, open_run
from cambrian.llm import ScriptedLLMServer, mutate_numbers

FEATURES = """
[archive.features]
width = { min = 0.0, max = 1.0, bins = 5 }
height = { min = 0.0, max = 1.0, bins = 4 }
"""


def grid_task(root: Path) -> Path:
    """The scaffold task, reporting width and height as MAP-Elites features."""
    task = root / "task"
    task.mkdir(parents=True)
    for name in ("cambrian.toml", "solve.py", "evaluate.py"):
        shutil.copy(SCAFFOLD / name, task / name)
    evaluate = task / "evaluate.py"
    text = evaluate.read_text().replace(
        '"artifacts": {"feedback": feedback},',
        '"artifacts": {"feedback": feedback},\n'
        '            "features": {"width": width, "height": height},',
    )
    evaluate.write_text(text)
    (task / "cambrian.toml").write_text((task / "cambrian.toml").read_text() + FEATURES)
    return task


def slow(responder, delay_s: float):
    """Wrap a scripted responder so that each answer takes ``delay_s``."""

    def respond(messages):
        time.sleep(delay_s)
        return responder(messages)

    return respond


def finished_run(task: Path, run_dir: Path, iterations: int = 12) -> str:
    """Run a short evolution with the scripted model; return the run id."""
    with ScriptedLLMServer(mutate_numbers(seed=5)) as server:
        ctx = open_run(
            task,
            run_dir,
            extra={"llm": {"model": "openai/scripted", "api_base": server.url}},
            overrides=[
                f"run.iterations={iterations}",
                "run.proposal_concurrency=2",
                'sandbox.backend="process"',
            ],
        )
        try:
            asyncio.run(Evolution(ctx).run())
        finally:
            ctx.close()
    return ctx.run_id


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class UiServer:
    """Serve a FastAPI app with uvicorn in a thread (a real HTTP server on loopback)."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> UiServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
