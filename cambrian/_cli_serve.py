"""``cambrian serve``: run a local model server (vLLM or llama.cpp) until Ctrl-C."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cambrian.errors import CambrianError

out = Console(highlight=False, soft_wrap=True)


def serve(
    model: Annotated[str, typer.Argument(help="Model id or folder (vLLM), or a .gguf file.")],
    engine: Annotated[str, typer.Option(help="vllm or llamacpp.")] = "vllm",
    gpus: Annotated[str, typer.Option(help="GPU ids, e.g. 0,1 (empty: CPU).")] = "",
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: a free one).")] = 0,
    tensor_parallel_size: Annotated[int | None, typer.Option(help="vLLM TP size.")] = None,
    max_model_len: Annotated[int | None, typer.Option(help="Context length cap.")] = None,
    served_name: Annotated[str, typer.Option(help="Name the server answers to.")] = "",
    python: Annotated[str, typer.Option(help="Interpreter with the engine installed.")] = (
        sys.executable
    ),
    threads: Annotated[int, typer.Option(help="CPU threads (llama.cpp).")] = 1,
    log: Annotated[Path | None, typer.Option(help="Engine log file.")] = None,
    extra: Annotated[list[str] | None, typer.Argument(help="After --: engine arguments.")] = None,
) -> None:
    """Serve MODEL with an OpenAI-compatible API on 127.0.0.1 and print its [llm] config."""
    from cambrian.llm import EngineSpec, ModelServer

    try:
        spec = EngineSpec(
            engine=engine,
            model=model,
            served_name=served_name,
            port=port,
            gpus=tuple(g for g in gpus.split(",") if g.strip()),
            tensor_parallel_size=tensor_parallel_size,
            max_model_len=max_model_len,
            threads=threads,
            python=python,
            extra_args=tuple(extra or ()),
        )
    except ValueError as exc:
        out.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    log = log or Path(".cambrian") / f"serve-{engine}-{spec.name}.log"
    server = ModelServer(spec, log_path=log)
    out.print(f"starting {engine} for {model}; log: {log}")
    try:
        server.start()
    except CambrianError as exc:
        out.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None
    out.print("ready. Use it from a task's cambrian.toml with:\n")
    out.print(server.config_toml(), markup=False)
    out.print("Ctrl-C stops the server.")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            if not server.running:
                out.print(f"[bold red]error:[/] the engine exited; see {log}")
                raise typer.Exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    out.print("stopped")
