"""Shared fixtures: task folders, a scripted OpenAI-compatible server, engine checks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_ray import ray_cluster  # noqa: F401 - a session fixture for every room

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "tasks"
SCAFFOLD = ROOT / "cambrian" / "scaffold"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-live", action="store_true", help="run tests that call real APIs")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-live"):
        return
    skip = pytest.mark.skip(reason="needs --run-live")
    for item in items:
        if "live" in item.keywords:
            item.add_marker(skip)


def engines_required() -> bool:
    """CI sets CAMBRIAN_REQUIRE_ENGINES=1: a missing engine then fails instead of skipping."""
    return os.environ.get("CAMBRIAN_REQUIRE_ENGINES") == "1"


def need_engine(available: bool, what: str) -> None:
    """Skip (or fail, under CAMBRIAN_REQUIRE_ENGINES=1) when ``what`` is unavailable."""
    if available:
        return
    if engines_required():
        pytest.fail(f"{what} is required (CAMBRIAN_REQUIRE_ENGINES=1) but unavailable")
    pytest.skip(f"{what} unavailable")


@pytest.fixture
def scaffold_task(tmp_path: Path) -> Path:
    """A fresh copy of the `cambrian init` task (a plain folder, not a git repo)."""
    task = tmp_path / "task"
    task.mkdir()
    for name in ("cambrian.toml", "solve.py", "evaluate.py"):
        shutil.copy(SCAFFOLD / name, task / name)
    return task


@pytest.fixture
def circle_task(tmp_path: Path) -> Path:
    """A copy of tasks/circle_packing as its own git repository."""
    task = tmp_path / "circles"
    shutil.copytree(TASKS / "circle_packing", task, ignore=shutil.ignore_patterns(".cambrian"))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", str(task)], check=True)
    subprocess.run([*git, "-C", str(task), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(task), "commit", "-qm", "task"], check=True)
    return task


def cambrian_cmd(*args: str) -> list[str]:
    """Command line running the installed CLI with this interpreter."""
    return [sys.executable, "-m", "cambrian.cli", *args]


def sigint_default() -> None:
    """``preexec_fn`` for a child the test Ctrl-Cs: SIGINT at its default disposition.

    A test run started in the background by a shell without job control inherits an
    ignored SIGINT, and so would the child: it would never see the test's Ctrl-C.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def scrubbed_env(**extra: str) -> dict[str, str]:
    """The test environment without provider keys (so no real API is ever called)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(extra)
    return env
