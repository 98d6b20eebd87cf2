"""Each controller proposes on its own islands: `cambrian run --islands 0,2`."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import subprocess
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest
from conftest import cambrian_cmd, scrubbed_env

from cambrian.agent import Evolution, choose_islands, open_run
from cambrian.errors import ConfigError
from cambrian.llm import ScriptedLLMServer, mutate_numbers

PROCESS = {"sandbox": {"backend": "process"}}
NO_SERVER = "http://127.0.0.1:9/v1"  # never contacted: the flag is refused first


def _evaluated(db_path: Path) -> list[tuple[str | None, int, str]]:
    """``(parent id, island, owning controller)`` of each evaluated program."""
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
        with closing(db):
            return db.execute(
                "select p.parent_id, p.island, p.owner from programs p"
                " join evaluations e on e.program_id = p.id"
            ).fetchall()
    except sqlite3.OperationalError:  # the run has not created its database yet
        return []


def _start(task: Path, run_dir: Path, url: str, islands: str) -> subprocess.Popen:
    cmd = cambrian_cmd(
        "run", str(task), "--run-dir", str(run_dir), "--iterations", "6", "--islands", islands,
        "--model", "openai/scripted", "--api-base", url, "-q", "--sandbox", "process",
        "--set", "archive.islands=2", "--set", "run.proposal_concurrency=2",
    )  # fmt: skip
    return subprocess.Popen(
        cmd, env=scrubbed_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _refused(*args: str) -> subprocess.CompletedProcess:
    cmd = cambrian_cmd("run", *args, "--model", "openai/scripted", "--api-base", NO_SERVER)
    return subprocess.run(cmd, capture_output=True, text=True, env=scrubbed_env(), timeout=60)


@pytest.mark.parametrize(
    ("chosen", "count", "expected"),
    [(None, 3, (0, 1, 2)), ([2, 0], 3, (2, 0)), ([0], 1, (0,))],
)
def test_choose_islands(chosen: list[int] | None, count: int, expected: tuple[int, ...]) -> None:
    assert choose_islands(chosen, count) == expected


@pytest.mark.parametrize("chosen", [[], [3], [-1], [1, 1]])
def test_choose_islands_refuses(chosen: list[int]) -> None:
    with pytest.raises(ConfigError, match=r"0\.\.2 \(archive.islands = 3\)"):
        choose_islands(chosen, 3)


def test_children_only_on_the_chosen_island(scaffold_task: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    sets = ["run.iterations=4", "archive.islands=2", "run.proposal_concurrency=2"]
    with ScriptedLLMServer(mutate_numbers(seed=2)) as server:
        llm = {"llm": {"model": "openai/scripted", "api_base": server.url}}
        ctx = open_run(scaffold_task, run_dir, extra={**llm, **PROCESS}, overrides=sets)
        try:
            reason = asyncio.run(Evolution(ctx, islands=[1]).run())
        finally:
            ctx.close()
    assert reason == "iterations"
    rows = _evaluated(run_dir / "archive.db")
    assert [island for parent, island, _ in rows if parent is None] == [0]
    children = [island for parent, island, _ in rows if parent is not None]
    assert len(children) >= 4 and set(children) == {1}


def test_two_controllers_each_on_its_own_island(scaffold_task: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "shared"
    second_asked = threading.Event()
    calls = itertools.count()
    first_llm, second_llm = mutate_numbers(seed=1), mutate_numbers(seed=2)

    def first(messages: list[dict]) -> str:
        if next(calls) >= 2:  # the first controller cannot finish the run alone
            second_asked.wait(timeout=60)
        return first_llm(messages)

    def second(messages: list[dict]) -> str:
        second_asked.set()
        return second_llm(messages)

    with ScriptedLLMServer(first) as one, ScriptedLLMServer(second) as two:
        workers = [_start(scaffold_task, run_dir, one.url, "0")]
        try:
            deadline = time.time() + 60
            while not _evaluated(run_dir / "archive.db"):  # the run and its root exist
                assert workers[0].poll() is None, workers[0].stdout.read().decode()
                assert time.time() < deadline, "the first controller did not evaluate the root"
                time.sleep(0.1)
            workers.append(_start(scaffold_task, run_dir, two.url, "1"))
            for proc in workers:
                output, _ = proc.communicate(timeout=120)  # the summary names the stop
                assert proc.returncode == 0, output.decode()[-3000:]
        finally:
            for proc in workers:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    rows = _evaluated(run_dir / "archive.db")
    assert [island for parent, island, _ in rows if parent is None] == [0]
    assert len([parent for parent, _, _ in rows if parent is not None]) >= 6
    by_controller: dict[str, set[int]] = {}
    for parent, island, owner in rows:
        if parent is not None:
            by_controller.setdefault(owner, set()).add(island)
    assert sorted(by_controller.values(), key=min) == [{0}, {1}]  # each on its own island


@pytest.mark.parametrize(
    ("islands", "bad"),
    [("2", "islands [2]"), ("0,0", "islands [0, 0]"), ("a", "--islands 'a'"), ("", "''")],
)
def test_bad_islands_flag_is_one_line_and_creates_no_run(
    scaffold_task: Path, tmp_path: Path, islands: str, bad: str
) -> None:
    run_dir = tmp_path / "run"
    done = _refused(
        str(scaffold_task), "--run-dir", str(run_dir), "--set", "archive.islands=2",
        "--islands", islands,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert bad in done.stderr and "0..1 (archive.islands = 2)" in done.stderr
    assert not run_dir.exists()


def test_bad_islands_flag_leaves_a_run_as_it_was(scaffold_task: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    llm = {"llm": {"model": "openai/scripted", "api_base": NO_SERVER}}
    open_run(scaffold_task, run_dir, extra={**llm, **PROCESS}).close()
    before = {path.name: path.read_bytes() for path in run_dir.glob("*.json")}
    done = _refused("--run-dir", str(run_dir), "--iterations", "99", "--islands", "1")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "error: islands [1]: choose distinct islands in 0..0 (archive.islands = 1)"
    )
    assert {path.name: path.read_bytes() for path in run_dir.glob("*.json")} == before
