"""Docker-only behaviour: images, auto choice, labels and clean-up, failure reasons."""

from __future__ import annotations

import logging
import socket
import subprocess
import uuid

import pytest
from conftest import cambrian_cmd, need_engine
from fixtures_docker import docker_image

from cambrian.config import SandboxConfig
from cambrian.errors import SandboxError
from cambrian.sandbox import DockerSandbox, ProcessSandbox, get_sandbox, make_limits
from cambrian.sandbox._container import LABEL_RUN, connect
from cambrian.sandbox._image import pip_tag


@pytest.fixture
def image():
    tag = docker_image()
    need_engine(tag is not None, "Docker daemon")
    return tag


def _containers(run_id):
    return connect().api.containers(all=True, filters={"label": f"{LABEL_RUN}={run_id}"})


def test_auto_picks_docker_when_usable_else_process_with_one_warning(image, caplog):
    box = get_sandbox(SandboxConfig(), run_id="auto")
    assert isinstance(box, DockerSandbox)
    assert box.identity()["image_id"].startswith("sha256:")
    box.close()
    with caplog.at_level(logging.WARNING, logger="cambrian"):
        box = get_sandbox(SandboxConfig(image="cambrian/missing:none"), run_id="auto")
    assert isinstance(box, ProcessSandbox)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "cambrian/missing:none not found" in line and "lost" in line


def test_explicit_docker_with_a_missing_image_is_a_clear_error(image):
    with pytest.raises(SandboxError, match="build-image"):
        DockerSandbox(SandboxConfig(image="cambrian/missing:none"))


def test_oom_timeout_and_pids_exhaustion_are_distinct(image, tmp_path):
    config = SandboxConfig(memory_mb=128, pids=16)
    box = DockerSandbox(config, run_id="reasons")
    try:
        hog = box.run(
            "python -c 'x = bytearray(1024 ** 3)'", workdir=tmp_path, limits=make_limits(config, 10)
        )
        slow = box.run("sleep 30", workdir=tmp_path, limits=make_limits(config, 1))
        forks = box.run(
            "for i in $(seq 40); do sleep 5 & done; wait",
            workdir=tmp_path,
            limits=make_limits(config, 10),
        )
    finally:
        box.close()
    assert hog.oom_killed and not hog.timed_out
    assert slow.timed_out and not slow.oom_killed
    assert not forks.timed_out and not forks.oom_killed and forks.returncode != 0
    assert "fork" in forks.stderr.lower() or "resource" in forks.stderr.lower()


def test_every_container_is_removed_and_clean_removes_only_dead_runs(image, tmp_path):
    box = DockerSandbox(SandboxConfig(warm=True), run_id="cleanup-test")
    box.run("true", workdir=tmp_path, limits=make_limits(box.config, 5))
    assert len(_containers("cleanup-test")) == 1  # the warm one
    box.close()
    assert _containers("cleanup-test") == []
    client = connect()
    dead_run = f"dead-{uuid.uuid4().hex[:8]}"
    client.containers.create(
        image,
        ["true"],
        labels={LABEL_RUN: dead_run, "cambrian.owner": f"{socket.gethostname()}:999999999"},
    )
    foreign = client.containers.create(image, ["true"], labels={"other": "x"})
    try:
        done = subprocess.run(cambrian_cmd("sandbox", "clean"), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert _containers(dead_run) == []
        assert client.containers.get(foreign.id)
    finally:
        foreign.remove(force=True)


def test_check_reports_each_backend(image):
    done = subprocess.run(cambrian_cmd("sandbox", "check"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "docker: usable" in done.stdout and "process: usable" in done.stdout


def test_pip_packages_go_into_a_derived_image(image, tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("six\n")
    done = subprocess.run(
        cambrian_cmd("sandbox", "build-image", "--requirements", str(req)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0 and "pip install" in done.stderr:
        pytest.skip(f"PyPI unreachable: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    tag = pip_tag(image, [], "six\n")
    assert tag in done.stdout
    client = connect()
    out = client.containers.run(
        tag, ["python", "-c", "import six; print(six.__name__)"], remove=True
    )
    assert out == b"six\n"
