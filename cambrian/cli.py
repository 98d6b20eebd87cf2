"""The ``cambrian`` command line: init, run, status, best, show."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from functools import partial
from importlib.resources import files as package_files
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cambrian._cli_sandbox import sandbox_app
from cambrian._cli_serve import serve
from cambrian._cli_ui import register as register_ui
from cambrian.errors import CambrianError, ConfigError

app = typer.Typer(
    help="cambrian: evolve code in a git repository with an LLM, safely.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
log = logging.getLogger("cambrian")

OK_STOPS = {"iterations", "target_score", "max_proposals", "max_cost"}
RunDir = Annotated[
    Path | None, typer.Option("--run-dir", help="Run folder (default: the latest run here).")
]


def _fail(exc: CambrianError) -> typer.Exit:
    """Print a one-line error and choose the exit code (2 for config errors, else 1)."""
    err.print("[bold red]error:[/] ", end="")
    err.print(str(exc), markup=False)
    return typer.Exit(2 if isinstance(exc, ConfigError) else 1)


def _open_records(run_dir: Path | None) -> Any:
    """Open a run folder for reading, or exit with a one-line error."""
    from cambrian.agent import open_records

    try:
        return open_records(run_dir)
    except CambrianError as exc:
        raise _fail(exc) from None


def _flags(**values: Any) -> dict[str, Any]:
    """Nest CLI flag values ('section.key': value) into a config dict, skipping unset ones."""
    nested: dict[str, Any] = {}
    for dotted, value in values.items():
        if value is None or value == []:
            continue
        *tables, key = dotted.split(".")
        target = nested
        for table in tables:
            target = target.setdefault(table, {})
        target[key] = value
    return nested


def _islands(text: str | None, config: Any) -> tuple[int, ...] | None:
    """``--islands 0,2`` as island indices, checked against ``archive.islands`` (None: all)."""
    from cambrian.agent import choose_islands

    if text is None:
        return None
    count = config.archive.islands
    try:
        chosen = [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(
            f"--islands {text!r} is not a comma-separated list of island indices in "
            f"0..{count - 1} (archive.islands = {count})"
        ) from None
    return choose_islands(chosen, count)


def _setup_logging(quiet: bool, log_file: Path | None = None, console_quiet: bool = False) -> None:
    """Log lines to stderr (and the run's log file); only the CLI configures logging."""
    log.setLevel(logging.INFO)
    log.handlers.clear()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING if quiet or console_quiet else logging.INFO)
    console.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(console)
    if log_file is not None:
        handler = logging.FileHandler(log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)


@app.command()
def run(
    task_dir: Annotated[Path | None, typer.Argument(help="Task folder with cambrian.toml.")] = None,
    iterations: Annotated[int | None, typer.Option(help="Evaluated candidates to produce.")] = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="Run folder; an existing one resumes.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="litellm model name.")] = None,
    api_base: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint URL.")] = None,
    sandbox: Annotated[str | None, typer.Option(help="auto, docker, process or ray.")] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster (auto, host:port, ray://host:port); sets --sandbox ray."),
    ] = None,
    target_score: Annotated[float | None, typer.Option(help="Stop once reached.")] = None,
    repo: Annotated[Path | None, typer.Option(help="Repository to evolve (no config).")] = None,
    evaluator: Annotated[str | None, typer.Option(help="Evaluator command.")] = None,
    editable: Annotated[list[str] | None, typer.Option(help="Editable glob (repeat).")] = None,
    description: Annotated[str | None, typer.Option(help="What to optimise.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="section.key=value")] = None,
    islands: Annotated[
        str | None,
        typer.Option(help="Islands this controller proposes on, e.g. 0,2 (default: all)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings.")] = False,
) -> None:
    """Evolve a task (or resume the run in --run-dir) and print the best program."""
    from cambrian._cli_report import LivePanel, ProgressPrinter, fan_out, print_summary
    from cambrian.agent import Evolution, open_run

    _setup_logging(quiet)
    extra = _flags(
        **{
            "run.iterations": iterations,
            "llm.model": model,
            "llm.api_base": api_base,
            "sandbox.backend": sandbox or ("ray" if ray_address else None),
            "sandbox.ray.address": ray_address,
            "run.target_score": target_score,
            "evaluator.command": evaluator,
            "task.editable": editable,
            "task.description": description,
        }
    )
    try:  # a bad --islands is refused before the run folder is touched
        check = partial(_islands, islands)
        ctx = open_run(repo or task_dir, run_dir, extra=extra, overrides=set_ or [], check=check)
    except CambrianError as exc:
        raise _fail(exc) from None
    live = out.is_terminal and not quiet  # a panel on a terminal; plain log lines otherwise
    _setup_logging(quiet, ctx.run_dir / "run.log", console_quiet=live)
    log.info("%s run %s in %s", "resuming" if ctx.resumed else "starting", ctx.run_id, ctx.run_dir)
    log.info("model %s; %s", ctx.llm.name, ctx.sandbox.describe())
    panel = LivePanel(ctx)
    hooks = (ProgressPrinter(ctx, quiet), panel) if live else (ProgressPrinter(ctx, quiet),)
    chosen = _islands(islands, ctx.config)
    evolution = panel.evolution = Evolution(ctx, on_event=fan_out(*hooks), islands=chosen)
    try:
        reason = asyncio.run(_evolve(evolution, panel if live else None))
    except KeyboardInterrupt:
        err.print(f"interrupted; resume with: cambrian run --run-dir {ctx.run_dir}", markup=False)
        raise typer.Exit(130) from None
    except CambrianError as exc:
        raise _fail(exc) from None
    finally:
        ctx.close()
    print_summary(out, ctx, reason, evolution.error)
    if reason not in OK_STOPS:
        raise typer.Exit(1)


async def _evolve(evolution: Any, panel: Any) -> str:
    """Run the evolution, inside a live terminal panel when one is given."""
    if panel is None:
        return await evolution.run()
    from rich.live import Live

    with Live(panel, console=out, refresh_per_second=4, redirect_stderr=False):
        return await evolution.run()


@app.command()
def status(
    run_dir: RunDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Counts, best score, tokens, acceptance, and each model's and operator's record."""
    from cambrian._cli_report import meta_status, operator_table, status_lines

    records = _open_records(run_dir)
    with records:
        stats = records.archive.stats()
        stats["models"] = records.archive.model_stats()
        stats["operators"] = operator_table(stats, records.archive.operator_stats())
        stats.update(meta_status(records.archive))
    if as_json:
        out.print_json(json.dumps(stats))
        return
    out.print(f"run {stats['run_id']}  ({records.run_dir})")
    for key in ("evaluated", "programs", "cells", "llm_calls"):
        out.print(f"  {key:<12} {stats[key]}")
    for key, count in sorted(stats["by_status"].items()):
        out.print(f"  {key:<12} {count}")
    out.print(f"  best         {stats['best_score']}  ({stats['best_program']})")
    out.print(
        f"  tokens       {stats['prompt_tokens']} in / {stats['completion_tokens']} out"
        f"  cost ${stats['cost_usd']:.4f}"
    )
    out.print(f"  elapsed      {stats['elapsed_s']:.1f}s")
    for line in status_lines(stats):
        out.print(line, markup=False)
    for name, row in sorted(stats["models"].items()):
        mean = row["reward_sum"] / row["rewards"] if row["rewards"] else 0.0
        out.print(
            f"  model {name}: {row['pulls']} pulls, {row['successes']} improved, "
            f"mean improvement {mean:.4g}, {row['errors']} errors, "
            f"{row['prompt_tokens'] + row['completion_tokens']} tokens, ${row['cost_usd']:.4f}",
            markup=False,
        )


@app.command()
def best(
    run_dir: RunDir = None,
    pareto: Annotated[
        bool, typer.Option("--pareto", help="List the non-dominated programs (archive.objectives).")
    ] = False,
) -> None:
    """The best program: id, score, and its diff against the initial program."""
    records = _open_records(run_dir)
    with records:
        if pareto:
            from cambrian._cli_archive import print_pareto

            if not print_pareto(records.archive, out):
                err.print("no program has been evaluated successfully yet")
                raise typer.Exit(1)
            return
        found = records.archive.best()
        if found is None:
            err.print("no program has been evaluated successfully yet")
            raise typer.Exit(1)
        program, evaluation = found
        root = records.archive.root()
        out.print(
            f"best program {program.id}  score {evaluation.score:.6g}  "
            f"generation {program.generation}  model {program.model or '-'}"
        )
        out.print(f"commit {program.commit}  (refs/cambrian/programs/{program.id})")
        diff = records.lineage.diff(root.commit, program.commit) if root else ""
        out.print(diff or "(identical to the initial program)", markup=False)


@app.command()
def show(program_id: str, run_dir: RunDir = None) -> None:
    """One program: metadata, evaluation, feedback, and its diff against its parent."""
    from cambrian._cli_report import print_program

    records = _open_records(run_dir)
    with records:
        try:
            program = records.archive.get(program_id)
        except KeyError as exc:
            err.print(f"[bold red]error:[/] {exc.args[0]}")
            raise typer.Exit(2) from None
        print_program(out, records, program)


@app.command()
def init(
    directory: Annotated[Path | None, typer.Argument(help="Folder to create or fill.")] = None,
    evaluator: Annotated[str | None, typer.Option(help="Evaluator command.")] = None,
    editable: Annotated[list[str] | None, typer.Option(help="Editable glob (repeat).")] = None,
    description: Annotated[str | None, typer.Option(help="What to optimise.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="section.key=value")] = None,
    from_: Annotated[
        Path | None, typer.Option("--from", help="OpenEvolve/ShinkaEvolve task to convert.")
    ] = None,
) -> None:
    """Scaffold a task, write the given flags down, or convert a foreign task (--from)."""
    from cambrian._cli_init import init_from
    from cambrian.config import CONFIG_FILE, dump_toml, load_config

    if from_ is not None:
        return init_from(from_, directory, out, err)
    if directory is None:
        err.print("[bold red]error:[/] name the folder to create: cambrian init DIR")
        raise typer.Exit(2)
    target = directory / CONFIG_FILE
    if target.exists():
        err.print(f"[bold red]error:[/] {target} exists already; edit it or choose another folder")
        raise typer.Exit(2)
    directory.mkdir(parents=True, exist_ok=True)
    extra = _flags(
        **{
            "evaluator.command": evaluator,
            "task.editable": editable,
            "task.description": description,
        }
    )
    if extra or set_:
        try:
            config = load_config(None, set_ or [], extra)
        except CambrianError as exc:
            raise _fail(exc) from None
        target.write_text(dump_toml(config))
        out.print(f"wrote {target}")
        return
    scaffold = package_files("cambrian") / "scaffold"
    for name in ("cambrian.toml", "solve.py", "evaluate.py"):
        if not (directory / name).exists():
            (directory / name).write_text(scaffold.joinpath(name).read_text())
    if not (directory / ".gitignore").exists():
        (directory / ".gitignore").write_text(scaffold.joinpath("gitignore").read_text())
    out.print(f"created a task in {directory}; evolve it with: cambrian run {directory}")


app.command(help="Serve a local model (vLLM or llama.cpp) on 127.0.0.1 until Ctrl-C.")(serve)
register_ui(app)  # ui, tree, export
app.add_typer(sandbox_app, name="sandbox")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
