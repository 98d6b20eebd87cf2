"""``cambrian sandbox build-image|check|clean``: the sandbox's images and leftovers."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cambrian.config import SandboxConfig
from cambrian.errors import CambrianError

sandbox_app = typer.Typer(help="Sandbox images, checks and clean-up.", no_args_is_help=True)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(exc: CambrianError) -> typer.Exit:
    """Print a one-line error; exit 1."""
    err.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(1)


@sandbox_app.command("build-image")
def build_image(
    tag: Annotated[str | None, typer.Option(help="Base image tag.")] = None,
    pip: Annotated[
        list[str] | None, typer.Option("--pip", help="Extra package (repeatable).")
    ] = None,
    requirements: Annotated[
        Path | None, typer.Option(help="requirements.txt installed into a derived image.")
    ] = None,
) -> None:
    """Build the sandbox image offline from this host's Python (plus extra packages)."""
    from cambrian.sandbox import build_base, build_derived, connect, default_tag, pip_tag

    base = tag or default_tag()
    if requirements is not None and not requirements.is_file():
        err.print(f"[bold red]error:[/] --requirements {requirements} is not a file")
        raise typer.Exit(2)
    try:
        client = connect()
        started = time.monotonic()
        image_id = build_base(client, base)
        size = client.images.get(base).attrs["Size"] / 1e6
        took = time.monotonic() - started
        out.print(f"built {base} {image_id[:19]} ({size:.0f} MB, {took:.1f}s)")
        if pip or requirements is not None:
            text = requirements.read_text() if requirements is not None else ""
            derived = pip_tag(base, pip or [], text)
            image_id = build_derived(client, base, derived, pip or [], requirements)
            out.print(f"built {derived} {image_id[:19]}")
    except CambrianError as exc:
        raise _fail(exc) from None


@sandbox_app.command()
def check() -> None:
    """Print, per backend, whether it works here and which isolation it gives.

    ``rlimits`` is the process backend without bubblewrap: where it would leave
    candidate code under your own uid it says so, and how to opt in.
    """
    from cambrian.errors import SandboxError
    from cambrian.sandbox import DockerSandbox, ProcessSandbox

    config = SandboxConfig()
    rlimits = functools.partial(ProcessSandbox, isolation="rlimits")
    makers = (("docker", DockerSandbox), ("process", ProcessSandbox), ("rlimits", rlimits))
    for name, make in makers:
        try:
            box = make(config, run_id="check")
            out.print(f"{name}: usable: {box.describe()}")
            box.close()
        except SandboxError as exc:
            out.print(f"{name}: unusable: {exc}")


@sandbox_app.command()
def clean(
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="Remove this run's containers, alive or not.")
    ] = None,
) -> None:
    """Remove containers left by dead cambrian runs (found by label; nothing else)."""
    from cambrian.sandbox import LABEL_RUN, connect, leftovers, remove_container

    try:
        client = connect()
        found = leftovers(client, run_id=run_id)
        for info in found:
            remove_container(client, info["Id"])
            label = info.get("Labels", {}).get(LABEL_RUN, "?")
            out.print(f"removed {info['Id'][:12]} (run {label})")
    except CambrianError as exc:
        raise _fail(exc) from None
    out.print(f"{len(found)} container(s) removed")
