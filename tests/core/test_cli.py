"""The command line as a user runs it: real subprocesses, real HTTP model, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import cambrian_cmd, scrubbed_env

from cambrian.config import load_config
from cambrian.llm import ScriptedLLMServer, mutate_numbers


def _cli(*args: str, cwd: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        cambrian_cmd(*args),
        capture_output=True,
        text=True,
        cwd=cwd,
        env=scrubbed_env(),
        timeout=timeout,
    )


def test_init_then_run_then_status(tmp_path: Path) -> None:
    task = tmp_path / "mytask"
    assert _cli("init", str(task)).returncode == 0
    assert {"cambrian.toml", "solve.py", "evaluate.py", ".gitignore"} <= {
        p.name for p in task.iterdir()
    }
    with ScriptedLLMServer(mutate_numbers(seed=2)) as server:
        done = _cli(
            "run",
            str(task),
            "--iterations",
            "3",
            "--model",
            "openai/scripted",
            "--api-base",
            server.url,
            cwd=tmp_path,
        )
    assert done.returncode == 0, done.stderr
    # the run went to ./.cambrian/runs and ./.cambrian/latest finds it
    status = _cli("status", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    stats = json.loads(status.stdout)
    assert stats["evaluated"] == 3 and stats["best_score"] >= 0.25
    assert stats["accepted"] >= 3 and stats["acceptance"] == stats["accepted"] / stats["replies"]
    assert sum(row["children"] for row in stats["operators"].values()) >= 3
    assert _cli("init", str(task)).returncode == 2  # never overwrites a config


def test_unknown_config_key_exits_2_and_creates_no_run(tmp_path: Path) -> None:
    task = tmp_path / "t"
    _cli("init", str(task))
    config = task / "cambrian.toml"
    config.write_text(config.read_text().replace("timeout_s = 30", "timeout = 30"))
    done = _cli("run", str(task), cwd=tmp_path)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "unknown config key 'evaluator.timeout'" in lines[0] and str(config) in lines[0]
    assert not (tmp_path / ".cambrian" / "runs").exists()


def test_repo_flags_and_init_writes_them_down(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.py").write_text("X = 1\n")
    done = _cli(
        "run",
        "--repo",
        str(repo),
        "--evaluator",
        "true",
        "--editable",
        "nomatch/*.py",
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "matches no file" in done.stderr
    done = _cli(
        "init",
        str(repo),
        "--evaluator",
        "python bench.py",
        "--editable",
        "a.py",
        "--description",
        "faster",
    )
    assert done.returncode == 0, done.stderr
    config = load_config(repo)
    assert config.evaluator.command == "python bench.py"
    assert config.task.editable == ("a.py",) and config.task.description == "faster"


def test_unreachable_model_is_a_clear_failure(scaffold_task: Path, tmp_path: Path) -> None:
    done = _cli(
        "run",
        str(scaffold_task),
        "--run-dir",
        str(tmp_path / "run"),
        "--model",
        "openai/x",
        "--api-base",
        "http://127.0.0.1:9/v1",
        "--set",
        "llm.retries=0",
        "--iterations",
        "2",
    )
    assert done.returncode == 1
    assert "stopped: llm_error" in done.stdout
    assert "127.0.0.1:9" in done.stdout  # the error names the endpoint
    assert "model openai/x: failed attempts: connection" in done.stdout  # classified, counted
    # the initial program was still evaluated and kept
    assert (
        json.loads(_cli("status", "--run-dir", str(tmp_path / "run"), "--json").stdout)[
            "best_score"
        ]
        == 0.25
    )


def test_read_commands_without_a_run(tmp_path: Path) -> None:
    for command in ("status", "best"):
        done = _cli(command, cwd=tmp_path)
        assert done.returncode == 2 and "no run found" in done.stderr


def test_help_does_not_import_litellm() -> None:
    code = "import sys; from cambrian.cli import app; print('litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False"
