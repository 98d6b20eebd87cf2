#!/usr/bin/env bash
# Install and start the engines the test suite exercises for real: bubblewrap, git, Docker,
# PostgreSQL (binaries only: tests start private clusters), Chromium and its driver.
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
echo "engines ready: bubblewrap $(bwrap --version | cut -d' ' -f2), docker $(docker version -f '{{.Server.Version}}'), postgres $(ls /usr/lib/postgresql), $(chromium --version 2>/dev/null | head -1)"
