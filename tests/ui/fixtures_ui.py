"""Helpers of the ui tests: a task with two feature axes, a finished run, a live server."""

from __future__ import annotations

import asyncio
import json
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


HOSTILE_REPLY = 'I will not edit. <img src=x onerror="window.__pwned=1"> done'


def ledger_archive(db: Path) -> tuple[str, dict[str, str]]:
    """An archive with a root, an accepted and a rejected child, replies and meta notes.

    Returns:
        The SQLAlchemy URL and the program ids by role (root, child, rejected).
    """
    from dataclasses import replace

    from cambrian.archive import SqlArchive
    from cambrian.config import ArchiveConfig
    from cambrian.types import EvalStatus, Evaluation, Program, ProgramStatus

    url = f"sqlite:///{db}"
    archive = SqlArchive(ArchiveConfig(), url=url, run_id="r1")
    archive.ensure_run({})
    root = Program(id="a" * 12, parent_id=None, island=0, generation=0, commit="c", tree="t")
    archive.new_program(root)
    archive.add(root, Evaluation(status=EvalStatus.OK, score=1.0))
    child = replace(
        root, id="b" * 12, parent_id=root.id, generation=1, tree="t2", operator="region"
    )
    child = replace(child, edit_kind="functions", templates="compact")
    archive.new_program(child, reply="x" * 25_000)  # longer than the view sends
    archive.add(child, Evaluation(status=EvalStatus.OK, score=2.0, stage=2))
    rejected = replace(
        root,
        id="c" * 12,
        parent_id=root.id,
        generation=1,
        tree="t3",
        operator="diff",
        status=ProgramStatus.REJECTED,
        reason="no edit found",
    )
    archive.new_program(rejected, reply=HOSTILE_REPLY)
    for pid in (child.id, rejected.id):
        archive.record_llm_call(pid, "m", prompt_tokens=10, completion_tokens=5)
    archive.add_meta_note(1, "m", "try <b>larger</b> widths")
    archive.add_meta_note(2, "m", "newest advice")
    archive.close()
    return url, {"root": root.id, "child": child.id, "rejected": rejected.id}


HOSTILE = '<img src=x onerror="window.__pwned=1">'


def hostile_archive(db: Path) -> tuple[str, dict[str, str]]:
    """An archive whose metric, feature, score, reason and model hold ``HOSTILE`` markup.

    The score and the feature are written with SQL, as a foreign or damaged archive could
    hold them: the archive's own API stores only numbers there.

    Returns:
        The SQLAlchemy URL and the program ids by role (root, rejected).
    """
    import sqlite3
    from dataclasses import replace

    from cambrian.archive import SqlArchive
    from cambrian.config import ArchiveConfig
    from cambrian.types import EvalStatus, Evaluation, Program, ProgramStatus

    url = f"sqlite:///{db}"
    archive = SqlArchive(ArchiveConfig(), url=url, run_id="r1")
    archive.ensure_run({})
    root = Program(id="a" * 12, parent_id=None, island=0, generation=0, commit="c", tree="t")
    archive.new_program(root)
    evaluation = Evaluation(status=EvalStatus.OK, score=1.0, metrics={"m": HOSTILE})
    archive.add(root, evaluation)
    rejected = replace(
        root,
        id="c" * 12,
        parent_id=root.id,
        generation=1,
        tree="t3",
        status=ProgramStatus.REJECTED,
        reason=HOSTILE,
    )
    archive.new_program(rejected)
    archive.record_llm_call(rejected.id, HOSTILE, prompt_tokens=10, completion_tokens=5)
    archive.close()
    with sqlite3.connect(db) as conn:
        conn.execute("update evaluations set features = ?", (json.dumps({"f": HOSTILE}),))
        conn.execute("update cells set score = ?", (HOSTILE,))
        conn.execute("update programs set model = ? where id = ?", (HOSTILE, rejected.id))
    return url, {"root": root.id, "rejected": rejected.id}
