"""ProcessSandbox specifics: isolation choice, rlimits, validation, factory, capture."""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from procs import live_pids

from cambrian.config import SandboxConfig
from cambrian.errors import ConfigError, SandboxError
from cambrian.sandbox import ProcessSandbox, get_sandbox, make_limits
from cambrian.sandbox._capture import OutputTail
from cambrian.types import Limits

CONFIG = SandboxConfig(backend="process")
IS_ROOT = os.geteuid() == 0


def limits(timeout_s: float = 10.0, **kw) -> Limits:
    return Limits(**{**make_limits(CONFIG, timeout_s).__dict__, **kw})


def bwrap_sandbox(config: SandboxConfig = CONFIG) -> ProcessSandbox:
    try:
        box = ProcessSandbox(config, isolation="bwrap")
        assert box.isolation == "bwrap"
    except SandboxError as exc:
        if os.environ.get("CAMBRIAN_REQUIRE_ENGINES") == "1":
            pytest.fail(f"bwrap required by CAMBRIAN_REQUIRE_ENGINES=1 but unusable: {exc}")
        pytest.skip(str(exc))
    return box


@pytest.fixture(params=["rlimits", "bwrap"])
def sandbox(request):
    box = ProcessSandbox(CONFIG, isolation="rlimits") if request.param == "rlimits" else None
    box = box or bwrap_sandbox()
    yield box
    box.close()


def test_isolation_names():
    with pytest.raises(ValueError, match="isolation"):
        ProcessSandbox(CONFIG, isolation="chroot")
    assert ProcessSandbox(CONFIG, isolation="rlimits").isolation == "rlimits"
    assert ProcessSandbox(CONFIG).isolation in ("bwrap", "rlimits")
    assert ProcessSandbox(CONFIG).name == "process"


def test_auto_picks_bwrap_when_it_works():
    bwrap_sandbox()
    assert ProcessSandbox(CONFIG, isolation="auto").isolation == "bwrap"


def test_describe_names_the_isolation():
    text = ProcessSandbox(CONFIG, isolation="rlimits").describe()
    assert text.startswith("process sandbox (rlimits only): NO filesystem or network isolation")
    assert "mem=2048MB" in text
    text = bwrap_sandbox().describe()
    assert text.startswith("process sandbox (bubblewrap): no network, read-only system")
    assert "private /tmp" in text and "\n" not in text


def test_rlimits_are_applied(sandbox, tmp_path):
    command = "ulimit -v; ulimit -t; ulimit -f; ulimit -c"
    result = sandbox.run(command, workdir=tmp_path, limits=limits(2.5, memory_mb=300))
    assert result.stdout.split() == [str(300 * 1024), "4", str(256 * 2048), "0"]


def _session_of(marker: str, deadline: float) -> tuple[int, int]:
    """(process group, session) of the process whose command line holds ``marker``.

    Read from this process's /proc, so both are pids as the test sees them, also when
    the sandbox runs in a pid namespace of its own (where getsid() answers 0).
    """
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and marker in (entry / "cmdline").read_text():
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    return int(fields[2]), int(fields[3])
            except OSError:  # the process ended while being read
                continue
        time.sleep(0.05)
    raise AssertionError(f"no process with {marker} appeared")


def test_own_session_and_process_group(sandbox, tmp_path):
    marker = f"cambrian-session-{uuid.uuid4().hex}"
    command = f"sh -c 'while [ ! -e go ]; do sleep 0.05; done' {marker}"
    box: dict = {}
    runner = threading.Thread(
        target=lambda: box.update(result=sandbox.run(command, workdir=tmp_path, limits=limits(120)))
    )
    runner.start()
    try:
        pgrp, sid = _session_of(marker, time.monotonic() + 100)
    finally:
        (tmp_path / "go").write_text("")
        runner.join()
    assert box["result"].returncode == 0, box["result"].stderr
    assert sid not in (0, os.getsid(0)) and pgrp != os.getpgid(0)


def test_sigkill_without_timeout_counts_as_oom(sandbox, tmp_path):
    result = sandbox.run("kill -9 $$", workdir=tmp_path, limits=limits())
    assert result.returncode in (-9, 137)
    assert result.oom_killed and not result.timed_out


def test_bad_arguments_raise_value_error(sandbox, tmp_path):
    with pytest.raises(ValueError, match="command"):
        sandbox.run("  ", workdir=tmp_path, limits=limits())
    with pytest.raises(ValueError, match="readonly"):
        sandbox.run("true", workdir=tmp_path, limits=limits(), readonly=["/etc/passwd"])
    with pytest.raises(ValueError, match="readonly"):
        sandbox.run("true", workdir=tmp_path, limits=limits(), readonly=["../x"])
    with pytest.raises(ValueError, match="env"):
        sandbox.run("true", workdir=tmp_path, limits=limits(), env={"A=B": "c"})
    with pytest.raises(ValueError, match="timeout"):
        sandbox.run("true", workdir=tmp_path, limits=limits(timeout_s=0))


def test_token_cannot_be_overridden(sandbox, tmp_path):
    env = {"CAMBRIAN_SANDBOX_TOKEN": "fixed"}
    first = sandbox.run("echo $CAMBRIAN_SANDBOX_TOKEN", workdir=tmp_path, limits=limits(), env=env)
    second = sandbox.run("echo $CAMBRIAN_SANDBOX_TOKEN", workdir=tmp_path, limits=limits())
    assert first.stdout.strip() not in ("fixed", second.stdout.strip())


def test_rlimits_mode_restores_modes_and_removes_tmpdir(tmp_path):
    box = ProcessSandbox(CONFIG, isolation="rlimits")
    (tmp_path / "keep.txt").write_text("k")
    os.chmod(tmp_path / "keep.txt", 0o640)
    command = "stat -c %a keep.txt; echo $TMPDIR; touch $TMPDIR/junk; chmod 500 $TMPDIR"
    result = box.run(command, workdir=tmp_path, limits=limits(), readonly=["keep.txt"])
    mode, tmpdir = result.stdout.split()
    assert mode == "440"
    assert oct(os.stat(tmp_path / "keep.txt").st_mode & 0o777) == "0o640"
    assert tmpdir.startswith("/tmp/cambrian-") and not os.path.exists(tmpdir)


def test_bwrap_hides_home_and_keeps_the_interpreter(tmp_path):
    box = bwrap_sandbox()
    home = Path.home()
    planted = home / f".cambrian-test-{uuid.uuid4().hex}"
    try:
        planted.write_text("secret")
    except OSError:
        pytest.skip("home directory is not writable")
    try:
        command = f"cat {planted}; ls -A /run; python -c 'import json; print(json.dumps(1))'"
        result = box.run(command, workdir=tmp_path, limits=limits())
    finally:
        planted.unlink()
    assert "secret" not in result.stdout
    assert "No such file" in result.stderr
    assert result.stdout == "cambrian\n1\n"  # /run holds only the inner-tier launcher


CAPS = "grep -E '^Cap(Eff|Bnd)' /proc/self/status"
# CAP_DAC_OVERRIDE, CAP_SETGID, CAP_SETUID, CAP_SETPCAP: what a root evaluator keeps.
OUTER_CAPS = 1 << 1 | 1 << 6 | 1 << 7 | 1 << 8


@pytest.mark.parametrize("isolation", ["bwrap", "rlimits"])
def test_candidate_has_no_capabilities_and_its_own_uid(isolation, tmp_path):
    box = bwrap_sandbox() if isolation == "bwrap" else ProcessSandbox(CONFIG, isolation="rlimits")
    command = f'{CAPS}; id -u; $CAMBRIAN_RUN sh -c "{CAPS}; id -u" > inner; cat inner'
    result = box.run(command, workdir=tmp_path, limits=limits())
    lines = result.stdout.split()
    outer_eff, inner = int(lines[1], 16), lines[5:9]
    assert inner[1::2] == ["0000000000000000", "0000000000000000"], result.stdout
    if IS_ROOT:
        assert lines[-1] == "65534" and lines[4] == "0"
        assert isolation == "rlimits" or outer_eff == OUTER_CAPS, result.stdout
    else:
        assert outer_eff == 0


def test_bwrap_network_true_shares_the_network(tmp_path):
    box = bwrap_sandbox(SandboxConfig(network=True))
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    code = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2); print('ok')"
    try:
        result = box.run(f'python -c "{code}"', workdir=tmp_path, limits=limits(network=True))
    finally:
        server.close()
    assert result.stdout == "ok\n", result.stderr
    assert "network shared" in box.describe()


def test_close_kills_a_running_command(sandbox, tmp_path):
    results = []
    worker = threading.Thread(
        target=lambda: results.append(
            sandbox.run("echo up; sleep 1000", workdir=tmp_path, limits=limits(60))
        )
    )
    started = time.monotonic()
    worker.start()
    time.sleep(0.3)
    sandbox.close()
    worker.join(60)
    assert results and time.monotonic() - started < 60  # not the sleep's 1000 s
    assert not results[0].timed_out and not results[0].oom_killed
    assert results[0].stdout == "up\n"
    with pytest.raises(SandboxError, match="closed"):
        sandbox.run("true", workdir=tmp_path, limits=limits())


def test_trivial_runs_back_to_back_all_succeed(sandbox, tmp_path):
    # How long they take is measured in benchmarks/sandbox.py, not asserted here.
    results = [sandbox.run("echo $$", workdir=tmp_path, limits=limits()) for _ in range(20)]
    assert all(r.returncode == 0 and not r.timed_out for r in results)
    assert all(r.stdout.strip().isdigit() for r in results)


def test_get_sandbox_resolves_names():
    assert isinstance(get_sandbox(CONFIG, run_id="r1"), ProcessSandbox)
    dotted = SandboxConfig(backend="cambrian.sandbox._process.ProcessSandbox")
    assert get_sandbox(dotted).run_id == ""
    with pytest.raises(ConfigError, match="process"):
        get_sandbox(SandboxConfig(backend="podman"))
    with pytest.raises(ConfigError, match="cannot be imported"):
        get_sandbox(SandboxConfig(backend="cambrian.sandbox._nope.NopeSandbox"))


def test_make_limits_maps_the_config():
    config = SandboxConfig(memory_mb=512, pids=32, output_kb=8, file_size_mb=4, network=True)
    got = make_limits(config, 7.5)
    assert got == Limits(
        timeout_s=7.5, memory_mb=512, pids=32, output_bytes=8192, file_size_mb=4, network=True
    )
    with pytest.raises(ValueError):
        make_limits(config, 0)


def test_output_tail_keeps_the_end():
    tail = OutputTail(5)
    for chunk in (b"abc", b"defgh", b"x" * 200_000, b"12345"):
        tail.feed(chunk)
    assert tail.text() == f"[... {200_013 - 5} bytes truncated ...]\n12345"
    small = OutputTail(100)
    small.feed("héllo".encode())
    assert small.text() == "héllo"
    cut = OutputTail(1)
    cut.feed("é".encode())
    assert cut.text() == "[... 1 bytes truncated ...]\n\ufffd"


def test_rlimits_without_a_uid_to_switch_to_is_refused_unless_allowed(monkeypatch):
    monkeypatch.setattr("cambrian.sandbox._process.running_as_root", lambda: False)
    with pytest.raises(SandboxError, match="sandbox.allow_unisolated = true"):
        ProcessSandbox(CONFIG, isolation="rlimits")
    allowed = CONFIG.model_copy(update={"allow_unisolated": True})
    text = ProcessSandbox(allowed, isolation="rlimits").describe()
    assert "candidates UNISOLATED" in text and "\n" not in text


def test_the_controller_is_not_dumpable_after_a_run(tmp_path):
    # No process of our uid can read our environment (API keys) or fds through /proc.
    box = ProcessSandbox(CONFIG, isolation="rlimits")
    assert box.run("true", workdir=tmp_path, limits=limits()).returncode == 0
    assert ctypes.CDLL(None).prctl(3, 0, 0, 0, 0) == 0  # PR_GET_DUMPABLE


# A process that can create no user namespace (the candidates' own filter, installed
# first) and has no uid to switch to: the launcher must refuse rather than run the
# command as the evaluator's uid in the evaluator's namespaces.
NO_USERNS = """import ctypes, os, sys
sys.path.insert(0, sys.argv[1])
import cambrian_filter
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(38, 1, 0, 0, 0)  # no_new_privs, which the filter needs
assert cambrian_filter.install(libc)
launcher = os.path.join(sys.argv[1], "cambrian_run.py")
os.execv(sys.executable, [sys.executable, "-I", "-S", "-B", launcher, *sys.argv[2:]])
"""


SYSTEM_PYTHON = "/usr/bin/python3"  # one that other uids may run (a venv under /root is not)
OTHER_UID = ["setpriv", "--reuid", "4242", "--regid", "4242", "--clear-groups"]


def _runner_copy() -> str:
    """The launcher's files in a fresh folder that another uid may read."""
    from cambrian.sandbox._tier import RUNNER_DIR

    runner = tempfile.mkdtemp(prefix="cambrian-runner-")
    os.chmod(runner, 0o755)
    for source in RUNNER_DIR.glob("*.py"):
        shutil.copy(source, runner)
        os.chmod(Path(runner) / source.name, 0o644)
    return runner


@pytest.mark.skipif(
    not IS_ROOT or shutil.which("setpriv") is None or not os.path.exists(SYSTEM_PYTHON),
    reason="needs root, setpriv and a system python3",
)
@pytest.mark.parametrize("opted_in", [False, True])
def test_the_launcher_refuses_a_candidate_it_cannot_isolate(opted_in):
    runner = _runner_copy()
    config = "workdir /\ntmp_mb 16\nnetwork 0" + ("\nunisolated 1" if opted_in else "")
    try:
        out = subprocess.run(
            [*OTHER_UID, SYSTEM_PYTHON, "-c", NO_USERNS, runner, "sh", "-c", "echo ran"],
            env={"PATH": "/usr/bin:/bin", "CAMBRIAN_RUN_CONFIG": config},
            cwd="/",
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
    finally:
        shutil.rmtree(runner)
    if opted_in:
        assert (out.returncode, out.stdout) == (0, "ran\n"), out.stderr
    else:
        assert out.returncode == 126 and out.stdout == ""
        assert out.stderr.count("\n") == 1 and "sandbox.allow_unisolated" in out.stderr


# Not root, under bubblewrap, the candidate shares the evaluator's uid. /proc/sys covered
# (as some bubblewrap set-ups do) keeps the launcher from mounting a fresh /proc, so it
# must cover the evaluator's entries instead.
BWRAP_EVALUATOR = """import os, subprocess, sys
run = [sys.argv[1], "-I", "-S", "-B", sys.argv[2] + "/cambrian_run.py"]
subprocess.run([*run, sys.argv[1], "cand.py"])
print("score 1.0", flush=True)
"""
BWRAP_CANDIDATE = """import glob, os
seen = [c for c in glob.glob("/proc/[0-9]*/cmdline") if b"evaluate.py" in open(c, "rb").read()]
for entry in seen:
    try:
        os.write(os.open(os.path.dirname(entry) + "/fd/1", os.O_WRONLY), b"score 1e300\\n")
    except OSError:
        pass
open("seen.txt", "w").write(repr([seen, os.path.exists("/proc/self/status")]))
"""


@pytest.mark.skipif(
    not IS_ROOT
    or not (shutil.which("setpriv") and shutil.which("bwrap"))
    or not os.path.exists(SYSTEM_PYTHON),
    reason="needs root (to become another uid), setpriv, bwrap and a system python3",
)
def test_a_candidate_of_the_evaluators_uid_cannot_reach_it_under_bubblewrap():
    runner = _runner_copy()
    work = Path(runner) / "work"
    work.mkdir()
    (work / "evaluate.py").write_text(BWRAP_EVALUATOR)
    (work / "cand.py").write_text(BWRAP_CANDIDATE)
    os.chown(work, 4242, 4242)
    argv = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", "/",
            "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/proc/sys",
            "--bind", str(work), str(work), "--chdir", str(work),
            "--", SYSTEM_PYTHON, "evaluate.py", SYSTEM_PYTHON, runner]  # fmt: skip
    config = f"workdir {work}\ntmp_mb 16\nnetwork 0\nkeep 1 {work}"
    try:
        out = subprocess.run(
            [*OTHER_UID, *argv],
            env={"PATH": "/usr/bin:/bin", "CAMBRIAN_RUN_CONFIG": config},
            capture_output=True,
            text=True,
            timeout=60,
        )
        seen = (work / "seen.txt").read_text() if (work / "seen.txt").exists() else ""
    finally:
        shutil.rmtree(runner)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "score 1.0\n"
    assert seen == "[[], True]", out.stderr


def test_slot_copies_drop_set_id_bits(tmp_path):
    # Copied by root, a candidate's setuid file would be root's and setuid until chown.
    from cambrian.sandbox._workdir import copy_tree

    source, target = tmp_path / "a", tmp_path / "b"
    (source / "d").mkdir(parents=True)
    (source / "evil").write_text("#!/bin/sh\n")
    os.chmod(source / "evil", 0o6755)
    os.chmod(source / "d", 0o2775)
    (source / "link").symlink_to("evil")
    target.mkdir()
    copy_tree(str(source), str(target))
    assert oct((target / "evil").stat().st_mode & 0o7777) == oct(0o755)
    assert oct((target / "d").stat().st_mode & 0o7777) == oct(0o775)
    assert os.readlink(target / "link") == "evil"
    assert (target / "evil").read_text() == "#!/bin/sh\n"


CONTROLLER = """import sys
from pathlib import Path
from cambrian.config import SandboxConfig
from cambrian.sandbox import ProcessSandbox, make_limits
box = ProcessSandbox(SandboxConfig(), isolation=sys.argv[1])
print("started", flush=True)
sleeper = "python3 -c 'import time; time.sleep(1000)' " + sys.argv[2]
box.run(f"$CAMBRIAN_RUN {sleeper} & {sleeper}; wait",
        workdir=Path(sys.argv[3]), limits=make_limits(SandboxConfig(), 600))
"""


def _sleepers(marker: str) -> list[int]:
    """The sleeping processes (the evaluator's and the candidate's) holding ``marker``."""
    found = []
    for pid in live_pids(marker, "cmdline"):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if argv[1:2] == [b"-c"] and marker.encode() in argv[-2:]:
                found.append(pid)
        except OSError:
            continue
    return found


@pytest.mark.parametrize("isolation", ["rlimits", "bwrap"])
def test_a_controller_killed_by_sigkill_leaves_nothing_running(isolation, tmp_path):
    if isolation == "bwrap":
        bwrap_sandbox()
    elif not IS_ROOT:
        pytest.skip("rlimits without root is refused by design")
    marker = f"cambrian-orphan-{uuid.uuid4().hex}"
    controller = subprocess.Popen(
        [sys.executable, "-c", CONTROLLER, isolation, marker, str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert controller.stdout.readline() == "started\n"
    end = time.monotonic() + 60
    while len(_sleepers(marker)) < 2 and time.monotonic() < end:
        time.sleep(0.1)
    assert len(_sleepers(marker)) == 2, "the evaluation never started"
    controller.kill()
    controller.wait()
    controller.stdout.close()
    end = time.monotonic() + 30
    while live_pids(marker, "cmdline") and time.monotonic() < end:
        time.sleep(0.1)
    assert not live_pids(marker, "cmdline")


@pytest.mark.parametrize("isolation", ["rlimits", "bwrap"])
def test_the_task_folder_is_hidden_from_candidates_wherever_it_lies(isolation, tmp_path):
    box = ProcessSandbox(CONFIG, isolation="rlimits") if isolation == "rlimits" else None
    box = box or bwrap_sandbox()
    task = Path("/opt") / f"cambrian-task-test-{uuid.uuid4().hex[:8]}"
    try:
        task.mkdir()
    except PermissionError:
        pytest.skip("needs a folder outside /tmp, /home and /root (run as root)")
    try:
        (task / "answers.txt").write_text("task-private-bytes")
        box.around = (str(task),)
        result = box.run(f"$CAMBRIAN_RUN cat {task}/answers.txt", workdir=tmp_path, limits=limits())
        assert "task-private-bytes" not in result.stdout + result.stderr
        assert result.returncode != 0
    finally:
        box.close()
        shutil.rmtree(task, ignore_errors=True)
