"""Foreign task folders evolved end to end with the scripted model, unchanged."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from conftest import cambrian_cmd, need_engine, scrubbed_env
from fixtures_compat import copy_task

from cambrian.agent import Evolution, open_run
from cambrian.llm import ScriptedLLMServer, mutate_numbers

PROCESS = ["sandbox.backend=process"]
SCRIPTED_MODEL = {"llm": {"model": "openai/scripted", "api_base": "http://127.0.0.1:9/v1"}}


def _recording(prompts: list[str]):
    """The number-mutating responder, keeping every prompt it is shown."""
    mutate = mutate_numbers(seed=5)

    def respond(messages):
        prompts.append("\n".join(m["content"] for m in messages))
        return mutate(messages)

    return respond


def _evolve(task: Path, run_dir: Path, url: str, *overrides: str):
    ctx = open_run(
        task,
        run_dir,
        extra={"llm": {"model": "openai/scripted", "api_base": url}},
        overrides=[*PROCESS, *overrides],
    )
    try:
        reason = asyncio.run(Evolution(ctx).run())
        return reason, ctx.archive.stats(), ctx.config
    finally:
        ctx.close()


@pytest.fixture(autouse=True)
def _bwrap() -> None:
    need_engine(shutil.which("bwrap") is not None, "bubblewrap")


def test_openevolve_folder_runs_unchanged(tmp_path: Path, caplog) -> None:
    task = copy_task("openevolve_point", tmp_path / "task")
    before = {p.name: p.read_bytes() for p in task.iterdir()}
    prompts: list[str] = []
    caplog.set_level(logging.INFO, logger="cambrian")
    with ScriptedLLMServer(_recording(prompts)) as server:
        reason, stats, config = _evolve(task, tmp_path / "run", server.url, "run.iterations=5")
    assert reason == "iterations" and stats["evaluated"] == 5
    assert stats["best_score"] >= (1 / (1 + (4.25**0.5)) + 1) / 2
    assert config.run.seed == 7 and config.archive.islands == 2
    assert any("away from the target" in p for p in prompts)  # artifacts reach the LLM
    assert any("Move the point" in p for p in prompts)  # system_message is the description
    warned = [r.message for r in caplog.records if "no meaning in cambrian" in r.message]
    assert len(warned) == 1 and "checkpoint_interval" in warned[0]
    assert {p.name: p.read_bytes() for p in task.iterdir()} == before  # no edits to it


def test_shinka_private_metrics_never_reach_the_llm(tmp_path: Path) -> None:
    task = copy_task("shinka_point", tmp_path / "task")
    prompts: list[str] = []
    with ScriptedLLMServer(_recording(prompts)) as server:
        reason, stats, _ = _evolve(
            task, tmp_path / "run", server.url, "run.iterations=4", "prompt.inspirations=2"
        )
    assert reason == "iterations" and stats["evaluated"] == 4
    assert prompts and any("below target" in p or "above target" in p for p in prompts)
    assert any("guess" in p for p in prompts)
    assert not any("holdout" in p or "_private" in p for p in prompts)
    db = sqlite3.connect(tmp_path / "run" / "archive.db")
    stored = [json.loads(r[0]) for r in db.execute("select metrics from evaluations")]
    assert stored and all("holdout_error" in m.get("_private", {}) for m in stored if m)


@pytest.mark.parametrize("name", ["openevolve_point", "shinka_point"])
def test_init_from_writes_a_config_that_reproduces_the_run(tmp_path: Path, name: str) -> None:
    detected = copy_task(name, tmp_path / "detected")
    written = copy_task(name, tmp_path / "written")
    done = subprocess.run(
        cambrian_cmd("init", "--from", str(written)),
        capture_output=True,
        text=True,
        env=scrubbed_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (written / "cambrian.toml").is_file() and "wrote" in done.stdout
    configs = []
    for task in (detected, written):
        ctx = open_run(task, tmp_path / f"o-{task.name}", extra=SCRIPTED_MODEL, overrides=PROCESS)
        configs.append(ctx.config)
        ctx.close()
    assert configs[0] == configs[1]
    with ScriptedLLMServer(mutate_numbers(seed=2)) as server:
        reason, stats, _ = _evolve(written, tmp_path / "run", server.url, "run.iterations=2")
    assert reason == "iterations" and stats["best_score"] is not None


def test_init_from_a_plain_folder_is_a_one_line_error(tmp_path: Path, scaffold_task: Path) -> None:
    done = subprocess.run(
        cambrian_cmd("init", "--from", str(scaffold_task)),
        capture_output=True,
        text=True,
        env=scrubbed_env(),
        timeout=60,
    )
    assert done.returncode == 2
    assert "exists already" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_cli_run_on_a_shinka_folder(tmp_path: Path) -> None:
    task = copy_task("shinka_point", tmp_path / "task")
    with ScriptedLLMServer(mutate_numbers(seed=1)) as server:
        done = subprocess.run(
            cambrian_cmd(
                "run",
                str(task),
                "--iterations",
                "2",
                "--run-dir",
                str(tmp_path / "run"),
                "--model",
                "openai/scripted",
                "--api-base",
                server.url,
                "--sandbox",
                "process",
            ),
            capture_output=True,
            text=True,
            env=scrubbed_env(),
            timeout=240,
        )
    assert done.returncode == 0, done.stderr
    assert "running it as a shinka task" in done.stderr and "best program" in done.stdout


def _docker_image_ready() -> bool:
    """Whether the Docker daemon answers and the default sandbox image exists (built if not)."""
    from cambrian.config import SandboxConfig
    from cambrian.errors import CambrianError
    from cambrian.sandbox import DockerSandbox

    for attempt in range(2):
        try:
            DockerSandbox(SandboxConfig(backend="docker")).close()
            return True
        except CambrianError:
            if attempt or shutil.which("docker") is None:
                return False
            build = cambrian_cmd("sandbox", "build-image")
            subprocess.run(build, capture_output=True, env=scrubbed_env(), timeout=600)
    return False


@pytest.mark.parametrize("name", ["openevolve_point", "shinka_point"])
def test_foreign_folders_run_in_docker(tmp_path: Path, name: str) -> None:
    need_engine(_docker_image_ready(), "Docker with the cambrian sandbox image")
    task = copy_task(name, tmp_path / "task")
    with ScriptedLLMServer(mutate_numbers(seed=4)) as server:
        reason, stats, config = _evolve(
            task, tmp_path / "run", server.url, "run.iterations=2", "sandbox.backend=docker"
        )
    assert config.sandbox.backend == "docker"
    assert reason == "iterations" and stats["evaluated"] == 2
    assert stats["by_status"]["failed"] == 0, stats  # the runner worked in the container
