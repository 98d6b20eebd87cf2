"""The ui, tree and export commands and the live terminal panel, through the real CLI."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from conftest import SCAFFOLD, cambrian_cmd, scrubbed_env
from fixtures_ui import finished_run, free_port, grid_task

from cambrian.archive import ArchiveViews, GitLineage
from cambrian.llm import ScriptedLLMServer, mutate_numbers

GIT = ["git", "-c", "user.name=u", "-c", "user.email=u@u"]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        [*GIT, "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        cambrian_cmd(*args),
        env=scrubbed_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _repo_with_task(root: Path) -> tuple[Path, Path]:
    """A user repository holding the scaffold task in a subfolder, committed."""
    repo = root / "repo"
    task = repo / "tasks" / "area"
    task.mkdir(parents=True)
    for name in ("cambrian.toml", "solve.py", "evaluate.py"):
        (task / name).write_text((SCAFFOLD / name).read_text())
    (repo / "README").write_text("my project\n")
    _git(root, "init", "-q", "-b", "main", str(repo))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "initial")
    return repo, task


def test_export_puts_changes_at_the_subpath_without_touching_the_work_tree(tmp_path) -> None:
    repo, task = _repo_with_task(tmp_path)
    run_dir = tmp_path / "run"
    run_id = finished_run(task, run_dir, iterations=6)
    # the user goes on working: a new commit, a staged and an unstaged change
    (repo / "README").write_text("my project, v2\n")
    _git(repo, "commit", "-qam", "v2")
    (repo / "README").write_text("staged\n")
    _git(repo, "add", "README")
    (repo / "tasks" / "area" / "solve.py").write_text("# unstaged edit\n")
    before = (
        _git(repo, "rev-parse", "HEAD"),
        _git(repo, "status", "--porcelain"),
        _git(repo, "branch", "--show-current"),
        (repo / ".git" / "index").read_bytes(),
    )
    views = ArchiveViews(f"sqlite:///{run_dir / 'archive.db'}")
    best = max(views.cells(run_id), key=lambda c: c["score"])["program_id"]
    done = _cli(
        "export", best, "--repo", str(repo), "--branch", "evolved", "--run-dir", str(run_dir)
    )
    assert done.returncode == 0, done.stderr
    after = (
        _git(repo, "rev-parse", "HEAD"),
        _git(repo, "status", "--porcelain"),
        _git(repo, "branch", "--show-current"),
        (repo / ".git" / "index").read_bytes(),
    )
    assert after == before
    assert _git(repo, "rev-parse", "evolved^") == before[0]  # on top of the user's HEAD
    lineage = GitLineage(run_dir / "lineage.git")
    commit = views.program(run_id, best)["commit"]
    assert (
        _git(repo, "show", "evolved:tasks/area/solve.py")
        == lineage.read_files(commit, ["solve.py"])["solve.py"]
    )
    assert _git(repo, "show", "evolved:README") == "my project, v2\n"  # the user's commit kept
    assert f"program {best}" in _git(repo, "log", "-1", "--format=%B", "evolved")
    generation = views.program(run_id, best)["generation"]
    done = _cli(
        "export",
        best,
        "--repo",
        str(repo),
        "--branch",
        "steps",
        "--history",
        "--run-dir",
        str(run_dir),
    )
    assert done.returncode == 0, done.stderr
    assert _git(repo, "rev-list", "--count", f"{before[0].strip()}..steps").strip() == str(
        generation
    )
    assert _git(repo, "rev-parse", "steps^{tree}") == _git(repo, "rev-parse", "evolved^{tree}")
    again = _cli(
        "export", best, "--repo", str(repo), "--branch", "evolved", "--run-dir", str(run_dir)
    )
    assert again.returncode == 2 and "exists" in again.stderr


def test_tree_prints_the_lineage(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_id = finished_run(grid_task(tmp_path), run_dir, iterations=6)
    done = _cli("tree", "--run-dir", str(run_dir))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    rows = ArchiveViews(f"sqlite:///{run_dir / 'archive.db'}").tree(run_id)["rows"]
    assert len(lines) == len(rows)
    assert lines[0].startswith(rows[0][0])  # the root first, unindented
    assert any("*" in line for line in lines) and any("-- " in line for line in lines)
    shallow = _cli("tree", "--run-dir", str(run_dir), "--depth", "0").stdout.splitlines()
    assert len(shallow) == 2 and "more below" in shallow[1]


def test_ui_off_loopback_requires_a_generated_token(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    finished_run(grid_task(tmp_path), run_dir, iterations=2)
    port = free_port()
    args = ["ui", "--run-dir", str(run_dir), "--host", "0.0.0.0", "--port", str(port)]
    server = subprocess.Popen(
        cambrian_cmd(*args), env=scrubbed_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        line = server.stdout.readline()
        assert f":{port}/?token=" in line, line
        token = line.strip().rsplit("token=", 1)[1]
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runs", timeout=2)
                raise AssertionError("served without the token")
            except urllib.error.HTTPError as exc:
                assert exc.code == 401
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline, "the ui did not start"
                time.sleep(0.2)
        ok = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runs?token={token}", timeout=5)
        assert ok.status == 200
    finally:
        server.terminate()
        server.wait(10)


def test_ui_accepts_the_host_it_was_started_with(tmp_path: Path) -> None:
    import http.client

    run_dir = tmp_path / "run"
    finished_run(grid_task(tmp_path), run_dir, iterations=2)
    port = free_port()
    args = ["ui", "--run-dir", str(run_dir), "--host", "127.0.0.2", "--port", str(port)]
    args += ["--token", "s3cret"]
    server = subprocess.Popen(
        cambrian_cmd(*args), env=scrubbed_env(), stdout=subprocess.PIPE, text=True
    )

    def status(host: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.2", port, timeout=5)
        try:
            conn.request("GET", "/api/runs?token=s3cret", headers={"Host": host})
            return conn.getresponse().status
        finally:
            conn.close()

    try:
        assert "127.0.0.2" in server.stdout.readline()
        deadline = time.monotonic() + 20
        while True:
            try:
                assert status(f"127.0.0.2:{port}") == 200  # a name only --host allows
                break
            except ConnectionError:
                assert time.monotonic() < deadline, "the ui did not start"
                time.sleep(0.2)
        assert status(f"localhost:{port}") == 200
        assert status(f"rebound.example:{port}") == 403
    finally:
        server.terminate()
        server.wait(10)


def _run_args(task: Path, run_dir: Path, url: str) -> list[str]:
    return [
        "run",
        str(task),
        "--run-dir",
        str(run_dir),
        "--iterations",
        "6",
        "--model",
        "openai/scripted",
        "--api-base",
        url,
        "--sandbox",
        "process",
    ]


def test_live_panel_on_a_terminal_plain_lines_otherwise(tmp_path: Path) -> None:
    task = grid_task(tmp_path)
    with ScriptedLLMServer(mutate_numbers(seed=2)) as llm:
        main, child = pty.openpty()
        env = scrubbed_env(COLUMNS="110", LINES="40", TERM="xterm-256color")
        proc = subprocess.Popen(
            cambrian_cmd(*_run_args(task, tmp_path / "a", llm.url)),
            stdin=child,
            stdout=child,
            stderr=child,
            env=env,
        )
        os.close(child)
        screen = b""
        while True:
            ready, _, _ = select.select([main], [], [], 60)
            try:
                chunk = os.read(main, 65536) if ready else b""
            except OSError:
                chunk = b""
            if not chunk:
                break
            screen += chunk
        assert proc.wait(30) == 0
        text = screen.decode(errors="replace")
        for needle in (
            "cambrian run",
            "evaluated",
            "6/6",
            "in flight",
            "LLM calls",
            "tokens",
            "best",
            "improved",
        ):
            assert needle in text, f"{needle!r} not in the panel:\n{text[-3000:]}"
        assert "\x1b[" in text  # a live (redrawn) panel, not plain lines
        plain = subprocess.run(
            cambrian_cmd(*_run_args(task, tmp_path / "b", llm.url)),
            env=scrubbed_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert plain.returncode == 0, plain.stderr
    assert "╭" not in plain.stdout + plain.stderr and "ok    score" in plain.stderr
    assert sys.platform.startswith("linux")
