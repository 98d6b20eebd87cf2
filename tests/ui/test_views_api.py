"""ArchiveViews and the JSON API over a real finished run (real SQLite, git, HTTP)."""

from __future__ import annotations

import json
import socket
import sqlite3
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from fixtures_ui import HOSTILE_REPLY, UiServer, finished_run, grid_task, ledger_archive

from cambrian._cli_ui import run_source
from cambrian.archive import ArchiveViews, GitLineage, SqlArchive
from cambrian.archive._views import REPLY_CHARS
from cambrian.config import ArchiveConfig
from cambrian.types import EvalStatus, Evaluation, Program, ProgramStatus
from cambrian.ui import TEXT_LIMIT, RunSource, create_app, resolve_token


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("uirun")
    run_dir = root / "run"
    run_id = finished_run(grid_task(root), run_dir, iterations=10)
    return run_dir, run_id


def _get(url: str, headers: dict | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.headers, response.read()


def test_views_match_the_database(run) -> None:
    run_dir, run_id = run
    url, source = run_source(run_dir)
    views = ArchiveViews(url)
    db = sqlite3.connect(run_dir / "archive.db")
    programs = db.execute("select id, status from programs order by seq").fetchall()
    tree = views.tree(run_id)
    assert [row[0] for row in tree["rows"]] == [p[0] for p in programs]
    assert [row[6] for row in tree["rows"]] == [p[1] for p in programs]
    assert tree["columns"][7] == "score" and tree["culled"] == 0
    # a delta holds only rows updated since
    newest = tree["max_updated"]
    assert views.tree(run_id, since=newest + 1)["rows"] == []
    assert 1 <= len(views.tree(run_id, since=newest)["rows"]) < len(programs)
    cells = views.cells(run_id)
    assert len(cells) == db.execute("select count(*) from cells").fetchone()[0]
    assert all("," in cell["key"] for cell in cells)  # two feature axes
    series = views.series(run_id)
    assert len(series["points"]) == db.execute("select count(*) from evaluations").fetchone()[0]
    assert series["models"][0]["model"] == "openai/scripted"
    assert views.runs()[0]["id"] == run_id
    assert source.axes == {
        "width": {"min": 0.0, "max": 1.0, "bins": 5},
        "height": {"min": 0.0, "max": 1.0, "bins": 4},
    }


def test_tree_culls_oldest_faint_programs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    archive = SqlArchive(ArchiveConfig(), url=url, run_id="r1")
    archive.ensure_run({})
    root = Program(id="a" * 12, parent_id=None, island=0, generation=0, commit="c", tree="t")
    archive.new_program(root)
    archive.add(root, Evaluation(status=EvalStatus.OK, score=1.0))
    for i in range(5):
        archive.new_program(
            replace(
                root,
                id=f"{i:012d}",
                parent_id=root.id,
                generation=1,
                tree=f"t{i}",
                status=ProgramStatus.REJECTED,
                reason="no edit: SEARCH not found",
            )
        )
    archive.close()
    views = ArchiveViews(url)
    tree = views.tree("r1", limit=2)
    assert tree["culled"] == 3
    assert [row[0] for row in tree["rows"]] == [root.id, "000000000003", "000000000004"]
    assert views.tree("r1")["culled"] == 0
    assert views.series("r1")["failures"] == {"no edit": 5}
    assert views.cells("r1") == [{"island": 0, "key": "0", "program_id": root.id, "score": 1.0}]


def test_views_never_create_tables(tmp_path: Path) -> None:
    views = ArchiveViews(f"sqlite:///{tmp_path / 'empty.db'}")
    assert views.ready() is False
    assert views.runs() == []
    assert views.ready() is False  # still no tables: the view never migrates


def test_api_program_detail_has_diff_and_files(run) -> None:
    run_dir, run_id = run
    url, source = run_source(run_dir)
    views = ArchiveViews(url)
    child = next(row for row in views.tree(run_id)["rows"] if row[2] and row[6] == "evaluated")
    with UiServer(create_app(views, {run_id: source})) as ui:
        status, _, body = _get(f"{ui.url}/api/runs/{run_id}/programs/{child[0]}")
        detail = json.loads(body)
        assert status == 200
        assert detail["diff"].startswith("diff --git a/solve.py b/solve.py")
        assert "+" in detail["diff"] and "WIDTH" in detail["files"]["solve.py"]
        assert "evaluate.py" not in detail["files"]  # only the editable files
        assert detail["evaluation"]["status"] == "ok"
        assert detail["model"] == "openai/scripted" and detail["prompt_tokens"] > 0
        assert detail["operator"] in ("diff", "region", "rewrite", "crossover")
        assert "SEARCH" in detail["reply"] and detail["templates"] == "default"
        runs = json.loads(_get(f"{ui.url}/api/runs")[2])
        assert runs[0]["lineage"] is True and runs[0]["axes"]["width"]["bins"] == 5
        page = _get(ui.url + "/")[2].decode()
        assert "/static/app.js" in page and "http" not in page.replace("http-equiv", "")
        for asset in ("app.js", "tree.js", "panels.js", "common.js", "style.css"):
            assert _get(f"{ui.url}/static/{asset}")[0] == 200
        with pytest.raises(urllib.error.HTTPError) as missing:
            _get(f"{ui.url}/api/runs/{run_id}/programs/ffffffffffff")
        assert missing.value.code == 404


def test_token_is_required_when_set(run) -> None:
    run_dir, run_id = run
    url, source = run_source(run_dir)
    with UiServer(create_app(ArchiveViews(url), {run_id: source}, token="s3cret")) as ui:
        with pytest.raises(urllib.error.HTTPError) as denied:
            _get(f"{ui.url}/api/runs")
        assert denied.value.code == 401
        with pytest.raises(urllib.error.HTTPError):
            _get(f"{ui.url}/?token=wrong")
        status, headers, _ = _get(f"{ui.url}/?token=s3cret")
        assert status == 200 and "cambrian_token=s3cret" in headers["set-cookie"]
        cookie = {"Cookie": "cambrian_token=s3cret"}
        assert _get(f"{ui.url}/api/runs", cookie)[0] == 200
        assert _get(f"{ui.url}/api/runs", {"Authorization": "Bearer s3cret"})[0] == 200


def test_resolve_token() -> None:
    assert resolve_token("127.0.0.1", None) is None
    assert resolve_token("0.0.0.0", "given") == "given"
    generated = resolve_token("0.0.0.0", None)
    assert generated and len(generated) >= 16 and generated != resolve_token("0.0.0.0", None)


def test_api_program_reply_operator_and_meta_notes(tmp_path: Path) -> None:
    url, ids = ledger_archive(tmp_path / "a.db")
    views = ArchiveViews(url)
    with UiServer(create_app(views, {})) as ui:
        api = f"{ui.url}/api/runs/r1"
        child = json.loads(_get(f"{api}/programs/{ids['child']}")[2])
        assert (child["operator"], child["edit_kind"], child["templates"]) == (
            "region",
            "functions",
            "compact",
        )
        assert child["evaluation"]["stage"] == 2
        assert child["reply"] == "x" * REPLY_CHARS and child["reply_truncated"] is True
        rejected = json.loads(_get(f"{api}/programs/{ids['rejected']}")[2])
        assert rejected["reply"] == HOSTILE_REPLY and rejected["reply_truncated"] is False
        assert rejected["operator"] == "diff" and rejected["evaluation"] is None
        notes = json.loads(_get(f"{api}/meta-notes")[2])
        assert [n["text"] for n in notes] == ["newest advice", "try <b>larger</b> widths"]
        assert [n["at_evaluated"] for n in notes] == [2, 1] and notes[0]["model"] == "m"
        assert len(json.loads(_get(f"{api}/meta-notes?limit=1")[2])) == 1
        summary = json.loads(_get(f"{api}/summary")[2])
        assert summary == {
            "programs": 3,
            "evaluated": 1,
            "replies": 2,
            "accepted": 1,
            "acceptance": 0.5,
            "duplicates": 0,
        }
        assert json.loads(_get(f"{ui.url}/api/runs/none/meta-notes")[2]) == []


def _status(port: int, host: str | None, path: str = "/api/runs") -> int:
    """The status of a raw HTTP/1.1 request carrying exactly this Host header."""
    head = f"GET {path} HTTP/1.1\r\n" + (f"Host: {host}\r\n" if host is not None else "")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall((head + "Connection: close\r\n\r\n").encode())
        reply = b""
        while b"\r\n" not in reply and (chunk := conn.recv(4096)):
            reply += chunk
    return int(reply.split(b" ", 2)[1])


def test_host_header_must_name_this_server(tmp_path: Path) -> None:
    url, _ = ledger_archive(tmp_path / "a.db")
    views = ArchiveViews(url)
    with UiServer(create_app(views, {})) as ui:
        port = ui.port
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LocalHost"):
            assert _status(port, host) == 200, host
        assert _status(port, "localhost", "/") == 200
        for host in (f"evil.example:{port}", "127.0.0.1.evil.example", "[::2]:80", "", None):
            assert _status(port, host) in (400, 403), host
        assert _status(port, f"evil.example:{port}") == 403
        assert _status(port, "evil.example", "/static/app.js") == 403
    with UiServer(create_app(views, {}, host="view.example")) as ui:
        assert _status(ui.port, f"view.example:{ui.port}") == 200
        assert _status(ui.port, f"localhost:{ui.port}") == 200
        assert _status(ui.port, "evil.example") == 403
    with UiServer(create_app(views, {}, token="s3cret", host="0.0.0.0")) as ui:
        # bound to every address, any name may reach it; the token still guards it
        assert _status(ui.port, "evil.example") == 401
        assert _status(ui.port, "192.0.2.7:8765", "/api/runs?token=s3cret") == 200


def test_api_caps_diff_files_and_output(tmp_path: Path) -> None:
    task = tmp_path / "task"
    task.mkdir()
    (task / "solve.py").write_text("x = 0\n")
    lineage = GitLineage(tmp_path / "lineage.git")
    base = lineage.init_from(task)
    big = "x = 1\n" * 60_000  # 360,000 characters
    commit, tree = lineage.commit(base, {"solve.py": big}, "big")
    url = f"sqlite:///{tmp_path / 'a.db'}"
    archive = SqlArchive(ArchiveConfig(), url=url, run_id="r1")
    archive.ensure_run({})
    root = Program(id="a" * 12, parent_id=None, island=0, generation=0, commit=base, tree="t")
    child = replace(root, id="b" * 12, parent_id=root.id, generation=1, commit=commit, tree=tree)
    for program in (root, child):
        archive.new_program(program)
    tail = "y" * (TEXT_LIMIT + 5)
    archive.add(child, Evaluation(status=EvalStatus.OK, score=1.0, output_tail=tail))
    archive.close()
    source = RunSource("r1", lineage=lineage)
    with UiServer(create_app(ArchiveViews(url), {"r1": source})) as ui:
        status, _, body = _get(f"{ui.url}/api/runs/r1/programs/{child.id}")
    assert status == 200 and len(body) < 4 * TEXT_LIMIT
    detail = json.loads(body)
    diff, text = detail["diff"], detail["files"]["solve.py"]
    assert diff.startswith("diff --git a/solve.py b/solve.py")
    assert diff.endswith("characters shown]") and f"{TEXT_LIMIT:,} of " in diff
    assert len(diff) < TEXT_LIMIT + 100
    assert (
        text
        == big[:TEXT_LIMIT] + f"\n[cut by cambrian ui: {TEXT_LIMIT:,} of 360,000 characters shown]"
    )
    output = detail["evaluation"]["output_tail"]
    assert (
        output
        == "y" * TEXT_LIMIT
        + f"\n[cut by cambrian ui: {TEXT_LIMIT:,} of {len(tail):,} characters shown]"
    )
