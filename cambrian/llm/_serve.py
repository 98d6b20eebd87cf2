"""Launch a local model server (vLLM or llama.cpp) as a child process on 127.0.0.1.

The engine's own OpenAI-compatible server does the serving; this module builds its
command line, starts it, waits for ``/health`` and ``/v1/models``, keeps its log in a
file, and stops it cleanly. The controller never imports the engine.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cambrian.errors import LLMError

ENGINES = ("vllm", "llamacpp")


@dataclass(frozen=True)
class EngineSpec:
    """What to serve and how.

    Attributes:
        engine: ``vllm`` or ``llamacpp``.
        model: A model id or folder (vLLM) or a .gguf file (llama.cpp).
        served_name: Name the server answers to (default: the model's last path part).
        port: Port on 127.0.0.1 (0: a free one).
        gpus: GPU ids for CUDA_VISIBLE_DEVICES; empty means CPU.
        tensor_parallel_size: vLLM tensor parallelism (default: one per GPU).
        max_model_len: Context length cap.
        gpu_memory_utilization: vLLM's share of each GPU's memory.
        threads: CPU threads (llama.cpp).
        python: Interpreter that has the engine installed (vLLM often lives in its own venv).
        extra_args: Passed to the engine verbatim.
    """

    engine: str
    model: str
    served_name: str = ""
    port: int = 0
    gpus: tuple[str, ...] = ()
    tensor_parallel_size: int | None = None
    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.9
    threads: int = 1
    python: str = sys.executable
    extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if not self.model:
            raise ValueError("model must name a model id, folder or .gguf file")

    @property
    def name(self) -> str:
        """The served model name."""
        return self.served_name or Path(self.model.rstrip("/")).name.removesuffix(".gguf")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def engine_command(spec: EngineSpec, port: int) -> tuple[list[str], dict[str, str]]:
    """The engine's command line and the environment variables it needs (pure)."""
    env = {"CUDA_VISIBLE_DEVICES": ",".join(spec.gpus)} if spec.gpus else {}
    if spec.engine == "llamacpp":
        command = [
            *(spec.python, "-m", "cambrian.llm._offline", "--model", spec.model),
            *("--port", str(port), "--threads", str(spec.threads), "--alias", spec.name),
            *("--ctx-size", str(spec.max_model_len or 8192)),
        ]
        return [*command, *spec.extra_args], env
    command = [
        *(spec.python, "-m", "vllm.entrypoints.openai.api_server", "--model", spec.model),
        *("--served-model-name", spec.name, "--host", "127.0.0.1", "--port", str(port)),
    ]
    if spec.max_model_len:
        command += ["--max-model-len", str(spec.max_model_len)]
    if spec.gpus:
        tp = spec.tensor_parallel_size or len(spec.gpus)
        command += ["--tensor-parallel-size", str(tp)]
        command += ["--gpu-memory-utilization", str(spec.gpu_memory_utilization)]
    else:  # the CPU build: eager mode, bfloat16, a small KV cache unless the user set one
        command += ["--enforce-eager", "--dtype", "bfloat16"]
        env["VLLM_CPU_KVCACHE_SPACE"] = os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2")
    return [*command, *spec.extra_args], env


class ModelServer:
    """A local engine serving an OpenAI-compatible API; a context manager.

    Args:
        spec: What to serve.
        log_path: Where the engine's output goes (None: a temporary file, removed on stop).
        start_timeout_s: How long to wait for the server to answer.
    """

    def __init__(
        self, spec: EngineSpec, *, log_path: Path | None = None, start_timeout_s: float = 600
    ) -> None:
        self.spec = spec
        self._log_path = log_path
        self._own_log: Path | None = None
        self._timeout = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self.url: str | None = None

    @property
    def model(self) -> str:
        """The litellm model name to use with ``url``."""
        return f"openai/{self.spec.name}"

    @property
    def running(self) -> bool:
        """Whether the engine process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def log_file(self) -> Path | None:
        """The engine's log file."""
        return self._log_path or self._own_log

    def start(self) -> str:
        """Start the engine and wait until it serves; return ``http://127.0.0.1:PORT/v1``.

        Raises:
            LLMError: The engine exited or did not answer in time (with its log tail).
        """
        if self.url is not None:
            return self.url
        port = self.spec.port or free_port()
        command, extra_env = engine_command(self.spec, port)
        log = self._open_log()
        with log.open("ab") as out:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **extra_env},
            )
        base = f"http://127.0.0.1:{port}"
        self._wait_ready(base, time.monotonic() + self._timeout)
        self.url = f"{base}/v1"
        return self.url

    def config_toml(self) -> str:
        """The ``[llm]`` section that points a task at this server."""
        return f'[llm]\nmodel = "{self.model}"\napi_base = "{self.url}"\n'

    def stop(self) -> None:
        """Terminate the engine (kill it if it lingers); remove a temporary log."""
        process, self._process, self.url = self._process, None, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if process is not None and process.stdin is not None:
            process.stdin.close()
        if self._own_log is not None:
            self._own_log.unlink(missing_ok=True)
            self._own_log = None

    def __enter__(self) -> ModelServer:
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
        """The log file, creating a temporary one when none was given."""
        if self._log_path is not None:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            return self._log_path
        fd, name = tempfile.mkstemp(prefix=f"cambrian-{self.spec.engine}-", suffix=".log")
        os.close(fd)
        self._own_log = Path(name)
        return self._own_log

    def _wait_ready(self, base: str, deadline: float) -> None:
        """Poll ``/health``, then check ``/v1/models`` lists the served name."""
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                self._fail(f"exited with status {self._process.returncode}")
            if _get(f"{base}/health") is not None:
                models = _get(f"{base}/v1/models")
                names = {m.get("id") for m in json.loads(models or "{}").get("data", [])}
                if self.spec.name in names:
                    return
            time.sleep(0.25)
        self._fail(f"did not answer within {self._timeout:.0f} s")

    def _fail(self, what: str) -> None:
        """Stop the engine and raise ``LLMError`` with the tail of its log."""
        log = self.log_file
        lines = log.read_text(errors="replace").strip().splitlines()[-5:] if log else []
        tail = " | ".join(line.strip() for line in lines if line.strip())
        self.stop()
        raise LLMError(
            f"{self.spec.engine} server for {self.spec.model} {what}; log tail: {tail or '(empty)'}"
        )


def _get(url: str) -> str | None:
    """The body of a 200 answer, else None."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode() if response.status == 200 else None
    except (urllib.error.URLError, OSError):
        return None
