"""Contract tests every Sandbox backend must pass (real processes, no mocks).

Add a backend by appending a ``Backend`` to ``BACKENDS``: its
``make`` builds a sandbox or calls ``pytest.skip`` when the engine is missing, and its
capability flags say which isolation promises the backend makes.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from fixtures_docker import docker_image
from fixtures_ray import ray_config
from procs import live_pids

from cambrian.config import SandboxConfig
from cambrian.errors import SandboxError
from cambrian.sandbox import DockerSandbox, ProcessSandbox, get_sandbox, make_limits
from cambrian.types import Limits, RunResult, Sandbox

CONFIG = SandboxConfig()
IS_ROOT = os.geteuid() == 0


def _engine_missing(why: str) -> None:
    if os.environ.get("CAMBRIAN_REQUIRE_ENGINES") == "1":
        pytest.fail(f"engine required by CAMBRIAN_REQUIRE_ENGINES=1 but unusable: {why}")
    pytest.skip(why)


def _make_rlimits() -> Sandbox:
    return ProcessSandbox(CONFIG, run_id="contract", isolation="rlimits")


def _make_bwrap() -> Sandbox:
    try:
        sandbox = ProcessSandbox(CONFIG, run_id="contract", isolation="bwrap")
        assert sandbox.isolation == "bwrap"
    except SandboxError as exc:
        _engine_missing(str(exc))
    return sandbox


def _make_docker(warm: bool) -> Callable[[], Sandbox]:
    def make() -> Sandbox:
        if docker_image() is None:
            _engine_missing("no Docker daemon answers")
        return DockerSandbox(SandboxConfig(warm=warm), run_id="contract")

    return make


def _make_ray(node_backend: str) -> Callable[[pytest.FixtureRequest], Sandbox]:
    """A Ray task on the local two-node cluster, in that node's own sandbox."""

    def make(request: pytest.FixtureRequest) -> Sandbox:
        cluster = request.getfixturevalue("ray_cluster")
        if cluster is None:
            _engine_missing("Ray is not installed")
        if node_backend == "docker" and docker_image() is None:
            _engine_missing("no Docker daemon answers")
        return get_sandbox(
            ray_config(cluster.address, node_backend=node_backend), run_id="contract"
        )

    return make


@dataclass(frozen=True)
class Backend:
    name: str
    make: Callable[..., Sandbox]  # ray backends take the pytest request (for the cluster)
    strict_readonly: bool  # protected files hold even against the evaluator as root
    isolates_network: bool
    private_tmp: bool
    same_path: bool = True  # the command sees the work dir at its host path


BACKENDS = [
    Backend("process-rlimits", _make_rlimits, False, False, False),
    Backend("process-bwrap", _make_bwrap, True, True, True),
    Backend("docker", _make_docker(False), True, True, True),
    # Warm containers protect by ownership: the evaluator is root with CAP_DAC_OVERRIDE in
    # there; candidate code is not (tests/sandbox/test_hostile.py).
    Backend("docker-warm", _make_docker(True), False, True, True, same_path=False),
    Backend("ray-bwrap", _make_ray("process"), True, True, True, same_path=False),
    Backend("ray-docker", _make_ray("docker"), True, True, True, same_path=False),
]


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def backend(request):
    return request.param


@pytest.fixture
def sandbox(backend, request):
    box = backend.make(request) if backend.name.startswith("ray") else backend.make()
    yield box
    box.close()


def limits(timeout_s: float = 10.0, **kw) -> Limits:
    base = make_limits(CONFIG, timeout_s)
    return Limits(**{**base.__dict__, **kw})


def gone(marker: str, within_s: float = 2.0) -> bool:
    """Whether every process carrying ``marker`` is dead (allowing time to be reaped)."""
    end = time.monotonic() + within_s
    while live_pids(marker):
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def test_exit_code_and_output_come_back(sandbox, tmp_path):
    result = sandbox.run("echo out; echo err >&2; exit 3", workdir=tmp_path, limits=limits())
    assert isinstance(result, RunResult)
    assert result.returncode == 3
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    assert not result.timed_out and not result.oom_killed
    assert result.duration_s > 0


def test_candidate_crash_is_a_result(sandbox, tmp_path):
    result = sandbox.run("python -c 'raise SystemExit(1/0)'", workdir=tmp_path, limits=limits())
    assert result.returncode == 1
    assert "ZeroDivisionError" in result.stderr


def _interpreter_prefix(backend) -> str:
    """The prefix the sandbox's python reports: images carry the base interpreter only."""
    return sys.base_prefix if "docker" in backend.name else sys.prefix


def _interpreter_bin(backend) -> str:
    """The directory first on the sandbox's PATH."""
    if "docker" in backend.name:
        return os.path.join(sys.base_prefix, "bin")
    return os.path.dirname(sys.executable)


def test_runs_in_workdir_with_the_host_interpreter(backend, sandbox, tmp_path):
    (tmp_path / "prog.py").write_text("import os, sys; print(os.getcwd()); print(sys.prefix)\n")
    result = sandbox.run("python prog.py", workdir=tmp_path, limits=limits())
    assert result.returncode == 0, result.stderr
    cwd, prefix = result.stdout.split()
    assert prefix == _interpreter_prefix(backend)
    assert cwd == str(tmp_path.resolve()) or not backend.same_path


def test_host_secrets_never_reach_the_candidate(backend, sandbox, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-planted-4f1c9a")
    monkeypatch.setenv("PYTHONPATH", "/planted")
    result = sandbox.run("env", workdir=tmp_path, limits=limits(), env={"EXTRA": "yes"})
    env = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert "sk-planted" not in result.stdout
    assert "OPENAI_API_KEY" not in env and env.get("PYTHONPATH") != "/planted"
    assert env["HOME"] == str(tmp_path.resolve()) or not backend.same_path
    assert env["PATH"].startswith(_interpreter_bin(backend) + ":")
    assert env["EXTRA"] == "yes"
    assert env["LC_ALL"] == "C.UTF-8"
    # Bytecode is never read from or written to the work dir: none at all, or a cache of
    # the evaluator's own outside it.
    cache = env["PYTHONPYCACHEPREFIX"]
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1" or "cambrian-pycache-" in cache
    assert not cache.startswith(str(tmp_path))
    assert len(env["CAMBRIAN_SANDBOX_TOKEN"]) >= 16


def test_timeout_kills_grandchildren(sandbox, tmp_path):
    marker = f"cambrian-test-{uuid.uuid4().hex}"
    command = "sleep 1000 & sh -c 'sleep 1000 & sleep 1000' & echo started; wait"
    started = time.monotonic()
    result = sandbox.run(command, workdir=tmp_path, limits=limits(0.5), env={"TEST_MARK": marker})
    assert result.timed_out
    assert not result.oom_killed
    assert result.stdout == "started\n"
    assert time.monotonic() - started < 60  # killed at the timeout, not after the sleeps
    assert gone(marker)


def test_background_children_die_with_a_normal_exit(sandbox, tmp_path):
    marker = f"cambrian-test-{uuid.uuid4().hex}"
    env = {"M": marker}
    result = sandbox.run("sleep 1000 & exit 0", workdir=tmp_path, limits=limits(), env=env)
    assert result.returncode == 0 and not result.timed_out
    assert result.duration_s < 5
    assert gone(marker)


DAEMON = """import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(1000)
    os._exit(0)
os.wait()
print("daemonised")
"""


def test_double_forked_daemon_is_swept(sandbox, tmp_path):
    (tmp_path / "daemon.py").write_text(DAEMON)
    marker = f"cambrian-test-{uuid.uuid4().hex}"
    result = sandbox.run("python daemon.py", workdir=tmp_path, limits=limits(), env={"M": marker})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "daemonised\n"
    assert not result.timed_out
    assert gone(marker)


def test_huge_output_is_capped(sandbox, tmp_path):
    cap = 4096
    command = "head -c 50000000 /dev/zero | tr '\\0' x; head -c 300000 /dev/zero | tr '\\0' y >&2"
    result = sandbox.run(command, workdir=tmp_path, limits=limits(30, output_bytes=cap))
    assert result.returncode == 0 and not result.timed_out
    assert result.stdout.startswith(f"[... {50_000_000 - cap} bytes truncated ...]\n")
    assert result.stdout.endswith("x" * cap)
    assert len(result.stdout) < cap + 100
    assert result.stderr.startswith(f"[... {300_000 - cap} bytes truncated ...]\n")


def test_memory_error_is_reported_as_oom(sandbox, tmp_path):
    command = "python -c 'x = bytearray(1024 ** 3)'"
    result = sandbox.run(command, workdir=tmp_path, limits=limits(memory_mb=256))
    assert result.returncode != 0
    assert "MemoryError" in result.stderr
    assert result.oom_killed and not result.timed_out


def test_readonly_files_cannot_be_modified(backend, sandbox, tmp_path):
    if not backend.strict_readonly and IS_ROOT:
        pytest.skip("chmod-based protection does not stop root; the caller verifies integrity")
    (tmp_path / "evaluate.py").write_text("original\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.txt").write_text("input\n")
    command = (
        "echo hacked > evaluate.py; echo hacked > data/in.txt; "
        "chmod u+w evaluate.py 2>/dev/null; echo x >> evaluate.py; echo done"
    )
    if backend.strict_readonly:
        command += "; rm -f evaluate.py; mv data/in.txt moved.txt"
    result = sandbox.run(
        command, workdir=tmp_path, limits=limits(), readonly=["evaluate.py", "data", "missing"]
    )
    assert "done" in result.stdout
    assert (tmp_path / "evaluate.py").read_text() == "original\n"
    assert (tmp_path / "data" / "in.txt").read_text() == "input\n"


def test_tmp_is_private_only_where_promised(backend, sandbox, tmp_path):
    name = f"/tmp/cambrian-test-{uuid.uuid4().hex}"
    try:
        result = sandbox.run(f"echo x > {name} && cat {name}", workdir=tmp_path, limits=limits())
        assert result.returncode == 0 and result.stdout == "x\n"
        assert os.path.exists(name) is not backend.private_tmp
    finally:
        if os.path.exists(name):
            os.unlink(name)


@pytest.fixture
def loopback_server():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(3)
    accepted = []

    def accept():
        try:
            accepted.append(server.accept()[0])
        except OSError:
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() at once
    server.close()
    thread.join(5)
    for conn in accepted:
        conn.close()


CONNECT = """import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()
    print("connected")
except OSError as exc:
    print("failed", exc)
"""


def test_network_is_cut_only_where_promised(backend, sandbox, tmp_path, loopback_server):
    port, accepted = loopback_server
    (tmp_path / "connect.py").write_text(CONNECT)
    result = sandbox.run(f"python connect.py {port}", workdir=tmp_path, limits=limits())
    assert result.returncode == 0, result.stderr
    if backend.isolates_network:
        assert result.stdout.startswith("failed")
        assert not accepted
    else:
        assert result.stdout == "connected\n"


def test_missing_workdir_is_an_infrastructure_error(sandbox, tmp_path):
    with pytest.raises(SandboxError):
        sandbox.run("true", workdir=tmp_path / "nope", limits=limits())


def test_describe_is_one_line_and_close_is_idempotent(sandbox, tmp_path):
    text = sandbox.describe()
    assert text and "\n" not in text
    assert sandbox.run("true", workdir=tmp_path, limits=limits()).returncode == 0
    sandbox.close()
    sandbox.close()


HELPER = """import cambrian_candidate as candidate, sys
code, out, err = candidate.run(["id", "-u"], stdin="ignored")
print("uid", out.strip(), code)
try:
    candidate.run([sys.executable, "-c", "import time; time.sleep(60)"], timeout_s=0.5)
except TimeoutError:
    print("timed out")
"""


def test_candidate_code_runs_in_the_inner_tier(sandbox, tmp_path):
    # The evaluator's helper module (on its PYTHONPATH) runs code through $CAMBRIAN_RUN:
    # as root under its own uid, and a run past its timeout is killed.
    (tmp_path / "evaluate.py").write_text(HELPER)
    result = sandbox.run("python evaluate.py", workdir=tmp_path, limits=limits(30))
    assert result.returncode == 0, result.stderr
    uid = "65534" if IS_ROOT else str(os.getuid())
    assert result.stdout.split("\n")[:2] == [f"uid {uid} 0", "timed out"], result.stdout
