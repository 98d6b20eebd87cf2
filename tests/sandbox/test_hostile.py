"""Hostile candidates, run through the CommandEvaluator on every available backend.

Each case is a real candidate program (``cand.py``) run before a protected
``evaluate.py``. CONTAINED says which backends contain which case (the README's table
says the same); a case a backend does not contain is skipped there, with the reason.
After each case the host is checked: no stray process (found by a marker in argv), no
file written outside the work dir, the evaluator unchanged, the planted secret absent
from everything recorded, and the sandbox still works for the next evaluation.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest
from fixtures_docker import docker_image
from fixtures_ray import ray_config
from procs import live_pids

from cambrian.config import EvaluatorConfig, SandboxConfig
from cambrian.errors import SandboxError
from cambrian.evaluators import CommandEvaluator
from cambrian.sandbox import DockerSandbox, ProcessSandbox, get_sandbox, make_limits
from cambrian.types import EvalStatus

ROOT = os.geteuid() == 0
CONFIG = SandboxConfig(memory_mb=512, file_size_mb=16, tmp_mb=32, pids=64)
EVALUATE = 'import json; print(json.dumps({"score": 1.0}))\n'
# ray-*: the evaluation runs as a Ray task on a node of a local two-node cluster, inside
# that node's bubblewrap or Docker sandbox.
ALL = {"process-rlimits", "process-bwrap", "docker", "docker-warm", "ray-bwrap", "ray-docker"}
STRONG = ALL - {"process-rlimits"}
DOCKER = {"docker", "docker-warm", "ray-docker"}
# Root ignores RLIMIT_NPROC, so only the pids cgroup stops a fork bomb run as root.
FORK_SAFE = DOCKER if ROOT else ALL
CONTAINED = {
    "fork_bomb": FORK_SAFE,
    "memory_hog": ALL,
    "infinite_loop": ALL,
    "cpu_spin": ALL,
    "network": STRONG,
    "env_secret": ALL,
    "home_secret": STRONG,
    "write_outside": STRONG,
    "big_stdout": ALL,
    "kill_parent": ALL,
    "kill_all": STRONG,
    "symlink": STRONG,
    "modify_evaluator": ALL,
    "daemon": ALL,
    "fill_disk": ALL,
}

CANDIDATES = {
    "fork_bomb": """import os, time
end = time.time() + 30
while time.time() < end:
    try:
        os.fork()
    except OSError:
        time.sleep(0.01)
""",
    "memory_hog": "chunks = []\nwhile True:\n    chunks.append(bytearray(64 * 1024 * 1024))\n",
    "infinite_loop": "while True:\n    pass\n",
    "cpu_spin": """import os, signal, threading
signal.signal(signal.SIGTERM, signal.SIG_IGN)
for _ in range(2):
    if os.fork() == 0:
        break
def spin():
    while True:
        pass
for _ in range(2):
    threading.Thread(target=spin, daemon=True).start()
spin()
""",
    "network": """import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=2)
    s.sendall(open("/etc/hostname").read().encode())
    print("exfiltrated")
except OSError as exc:
    print("blocked", exc)
""",
    "env_secret": "import os\nprint(dict(os.environ))\n",
    "home_secret": """import glob, os, pwd
for home in {pwd.getpwuid(0).pw_dir, os.path.expanduser("~root"), "/root", "/home"}:
    for path in glob.glob(home + "/.cambrian-hostile-*"):
        try:
            print(open(path).read())
        except OSError as exc:
            print("denied", exc)
""",
    "write_outside": """import sys
for path in sys.argv[2:]:
    try:
        open(path, "w").write("pwned")
        print("wrote", path)
    except OSError as exc:
        print("denied", exc)
""",
    "big_stdout": """import sys
block = b"x" * (1 << 20)
for _ in range(1024):
    sys.stdout.buffer.write(block)
sys.stdout.buffer.write(b"\n")
sys.stdout.flush()
""",
    "kill_parent": """import os, signal
os.kill(os.getppid(), signal.SIGKILL)
os.killpg(0, signal.SIGKILL)
""",
    "kill_all": "import os, signal\nos.kill(-1, signal.SIGKILL)\n",
    "symlink": """import os, sys
os.symlink(sys.argv[2], "leak")
try:
    print(open("leak").read())
except OSError as exc:
    print("denied", exc)
""",
    "modify_evaluator": """import os
for attempt in (lambda: open("evaluate.py", "w").write("print('{\\"score\\": 99}')"),
                lambda: os.chmod("evaluate.py", 0o777),
                lambda: os.replace("cand.py", "evaluate.py")):
    try:
        attempt()
    except OSError as exc:
        print("denied", exc)
""",
    "daemon": """import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(1000)
    os._exit(0)
os.wait()
print("daemonised")
""",
    "fill_disk": """import os
block = b"x" * (1 << 20)
for target in ("big.bin", os.path.join(os.environ.get("TMPDIR", "/tmp"), "big.bin")):
    try:
        with open(target, "wb") as f:
            for _ in range(64):
                f.write(block)
    except OSError as exc:
        print("stopped", target, exc)
""",
}
TIMEOUT = {"fork_bomb": 4, "infinite_loop": 2, "cpu_spin": 2, "big_stdout": 60}


def _make(name: str, request: pytest.FixtureRequest):
    if name.startswith("ray"):
        from conftest import need_engine

        cluster = request.getfixturevalue("ray_cluster")
        need_engine(cluster is not None, "Ray")
        node_backend = "docker" if name == "ray-docker" else "process"
        if node_backend == "docker":
            need_engine(docker_image() is not None, "Docker daemon")
        config = ray_config(cluster.address, CONFIG.model_dump(), node_backend=node_backend)
        return get_sandbox(config, run_id="hostile")
    if name.startswith("process"):
        isolation = name.split("-")[1]
        try:
            box = ProcessSandbox(CONFIG, run_id="hostile", isolation=isolation)
            assert box.isolation == isolation
        except SandboxError as exc:
            pytest.skip(str(exc))
        return box
    from conftest import need_engine

    need_engine(docker_image() is not None, "Docker daemon")
    return DockerSandbox(
        CONFIG.model_copy(update={"warm": name == "docker-warm"}), run_id="hostile"
    )


def _no_strays(marker: str) -> bool:
    end = time.monotonic() + 3
    while live_pids(marker, "cmdline"):
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(4)
    got = []
    thread = threading.Thread(target=lambda: _accept(server, got), daemon=True)
    thread.start()
    yield server.getsockname()[1], got
    server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() at once
    server.close()
    thread.join(5)


def _accept(server, got):
    try:
        got.append(server.accept()[0].recv(100))
    except OSError:
        pass


@pytest.fixture
def secret(monkeypatch):
    value = f"sk-hostile-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", value)
    home = Path(os.path.expanduser("~"))
    planted = home / f".cambrian-hostile-{uuid.uuid4().hex}"
    planted.write_text(value)
    yield value, planted
    planted.unlink()


@pytest.mark.parametrize("backend_name", sorted(ALL))
@pytest.mark.parametrize("case", sorted(CANDIDATES))
def test_hostile_candidate_is_contained(case, backend_name, tmp_path, secret, listener, request):
    if backend_name not in CONTAINED[case]:
        pytest.skip(f"{backend_name} does not contain {case} (see README)")
    value, planted = secret
    port, received = listener
    work = tmp_path / "work"
    work.mkdir()
    (work / "cand.py").write_text(CANDIDATES[case])
    (work / "evaluate.py").write_text(EVALUATE)
    host_secret = tmp_path / "host-secret.txt"
    host_secret.write_text(value)
    mode_before = host_secret.stat()
    outside = [str(tmp_path / "outside.txt"), f"/tmp/cambrian-hostile-{uuid.uuid4().hex}"]
    marker = f"hostile{uuid.uuid4().hex}"
    args = {"network": str(port), "write_outside": " ".join(outside), "symlink": str(host_secret)}
    command = f"python cand.py {marker} {args.get(case, '')}; python evaluate.py"
    box = _make(backend_name, request)
    try:
        limits = make_limits(CONFIG, TIMEOUT.get(case, 10))
        evaluator = CommandEvaluator(EvaluatorConfig(command=command), box, limits)
        evaluation = evaluator.evaluate(work, ["evaluate.py"])
        recorded = f"{evaluation.reason}\n{evaluation.output_tail}"
        assert value not in recorded
        assert _no_strays(marker), f"stray processes after {case}"
        assert not received, "the candidate reached a host socket"
        assert not any(os.path.exists(p) for p in outside)
        assert planted.read_text() == value and host_secret.read_text() == value
        stat_after = host_secret.stat()
        assert (stat_after.st_uid, stat_after.st_mode) == (mode_before.st_uid, mode_before.st_mode)
        tampered = (work / "evaluate.py").read_text() != EVALUATE
        assert not tampered or "modified evaluator file" in evaluation.reason
        _expect(case, evaluation, work)
        # The run goes on: the same sandbox evaluates the next candidate normally.
        (work / "cand.py").write_text("print('benign')\n")
        assert box.run("python cand.py", workdir=work, limits=limits).stdout == "benign\n"
    finally:
        box.close()
        for path in outside:
            if os.path.exists(path):
                os.unlink(path)


def _expect(case: str, evaluation, work: Path) -> None:
    status = evaluation.status
    if case in ("infinite_loop", "cpu_spin", "fork_bomb"):
        assert status is EvalStatus.TIMEOUT, evaluation.reason
    elif case == "memory_hog":
        assert status is EvalStatus.OOM, evaluation.reason
    elif case == "big_stdout":
        assert status is EvalStatus.OK, evaluation.reason
        assert len(evaluation.output_tail) <= 4100
    elif case in ("kill_parent", "kill_all"):
        assert status is not EvalStatus.OK or evaluation.score == 1.0
        assert evaluation.reason or status is EvalStatus.OK
    elif case == "fill_disk":
        big = work / "big.bin"
        assert not big.exists() or big.stat().st_size <= CONFIG.file_size_mb * 1024 * 1024
    else:
        assert status in (EvalStatus.OK, EvalStatus.ERROR), evaluation.reason
