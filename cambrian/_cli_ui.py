"""The ``ui``, ``tree`` and ``export`` commands: watch, print the lineage, export a program."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cambrian.errors import CambrianError, ConfigError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
RunDir = Annotated[
    Path | None, typer.Option("--run-dir", help="Run folder (default: the latest run here).")
]


def _die(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error and return the exit to raise."""
    err.print(f"[bold red]error:[/] {message}", markup=True)
    return typer.Exit(code)


def run_source(run_dir: Path | None) -> tuple[str, Any]:
    """Return the archive URL and the ``RunSource`` of a run folder, reading nothing else.

    The database is not opened here, so the view never migrates a run's archive.
    """
    from cambrian.agent import FileRules, read_run_files, resolve_run_dir
    from cambrian.archive import GitLineage
    from cambrian.config import build_config
    from cambrian.ui import RunSource

    run_dir = resolve_run_dir(run_dir).resolve()
    meta, data = read_run_files(run_dir)
    config = build_config(data, str(run_dir))
    url = config.archive.url or f"sqlite:///{run_dir / 'archive.db'}"
    rules = FileRules(config.task.editable, config.evaluator.protected)
    axes = {name: axis.model_dump() for name, axis in config.archive.features.items()}
    source = RunSource(
        meta["run_id"],
        lineage=GitLineage(run_dir / "lineage.git"),
        is_editable=rules.is_editable,
        axes=axes,
        maximize=config.evaluator.direction == "maximize",
    )
    return url, source


def ui(
    run_dir: RunDir = None,
    db: Annotated[str | None, typer.Option(help="Archive database URL (all its runs).")] = None,
    port: Annotated[int, typer.Option(help="TCP port.")] = 8765,
    host: Annotated[
        str,
        typer.Option(
            help="Address to bind; off loopback a token is required. Requests must name it "
            "or a loopback name in their Host header."
        ),
    ] = "127.0.0.1",
    token: Annotated[
        str | None, typer.Option(help="Access token (generated off loopback).")
    ] = None,
) -> None:
    """Serve the live web view of a run (or of every run in --db) until Ctrl-C."""
    try:
        from cambrian.archive import ArchiveViews
        from cambrian.ui import create_app, resolve_token, serve
    except ImportError as exc:
        raise _die(
            f"the web view needs the ui extra ({exc.name} missing): pip install 'cambrian[ui]'"
        ) from None
    sources = {}
    url = db
    if db is None or run_dir is not None:
        try:
            run_url, source = run_source(run_dir)
        except CambrianError as exc:
            raise _die(str(exc)) from None
        url = url or run_url
        sources[source.run_id] = source
    secret = resolve_token(host, token)
    app = create_app(ArchiveViews(url), sources, token=secret, host=host)
    where = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
    out.print(f"cambrian ui on {where}" + (f"?token={secret}" if secret else ""))
    if secret and not token:
        out.print(f"  access token (generated): {secret}")
    serve(app, host, port)


def tree(
    run_dir: RunDir = None,
    depth: Annotated[int | None, typer.Option(help="Deepest generation to print.")] = None,
) -> None:
    """Print the run's lineage tree as text: id, status, score; elites and the best marked."""
    from cambrian._cli_report import render_tree
    from cambrian.archive import ArchiveViews

    try:
        url, source = run_source(run_dir)
    except CambrianError as exc:
        raise _die(str(exc)) from None
    views = ArchiveViews(url)
    try:
        if not views.ready():
            raise _die("the run has no archive yet; wait until it has started")
        rows = views.tree(source.run_id)["rows"]
        cells = views.cells(source.run_id)
    finally:
        views.close()
    for line in render_tree(rows, cells, source.maximize, depth):
        out.print(line, markup=False)


def export(
    program_id: Annotated[str, typer.Argument(help="Program id (or a unique prefix).")],
    repo: Annotated[Path, typer.Option(help="Your git repository to add the branch to.")],
    branch: Annotated[str, typer.Option(help="New branch name.")],
    history: Annotated[
        bool, typer.Option("--history", help="One commit per lineage step instead of one.")
    ] = False,
    run_dir: RunDir = None,
) -> None:
    """Create a branch in your repository holding a program's changes (working tree untouched)."""
    from cambrian._cli_export import export_program
    from cambrian.agent import open_records

    try:
        records = open_records(run_dir)
    except CambrianError as exc:
        raise _die(str(exc), 2 if isinstance(exc, ConfigError) else 1) from None
    with records:
        try:
            program = records.archive.get(program_id)
            commit, count = export_program(records, program, repo, branch, history)
        except KeyError as exc:
            raise _die(exc.args[0]) from None
        except CambrianError as exc:
            raise _die(str(exc), 2 if isinstance(exc, ConfigError) else 1) from None
    out.print(f"branch {branch} in {repo}: {count} commit(s), head {commit[:12]}")
    out.print(f"  see it with: git -C {repo} log --stat {branch}")


def register(app: typer.Typer) -> None:
    """Add the commands of this module to the ``cambrian`` app."""
    app.command()(ui)
    app.command()(tree)
    app.command()(export)
