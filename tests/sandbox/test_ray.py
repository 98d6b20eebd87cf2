"""The Ray backend on a real two-node cluster: spread, retries, clear errors."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import need_engine
from fixtures_docker import docker_image
from fixtures_ray import ray_available, ray_config
from procs import live_pids

from cambrian.config import EvaluatorConfig, SandboxConfig
from cambrian.errors import SandboxError
from cambrian.evaluators import CommandEvaluator
from cambrian.sandbox import get_sandbox, make_limits
from cambrian.types import EvalStatus

TASK_TITLE = "ray::run_on_node"


@pytest.fixture
def cluster(ray_cluster):
    need_engine(ray_cluster is not None, "Ray (pip install 'cambrian[ray]')")
    return ray_cluster


@pytest.fixture
def ray_box(cluster):
    box = get_sandbox(ray_config(cluster.address), run_id="raytest")
    yield box
    box.close()


def _timed_sleep(box, workdir: Path, seconds: float) -> tuple[str, float, float]:
    workdir.mkdir()
    command = f"date +%s.%N; sleep {seconds}; date +%s.%N; echo $CAMBRIAN_RAY_NODE"
    result = box.run(command, workdir=workdir, limits=make_limits(SandboxConfig(), 30))
    assert result.returncode == 0, result.stderr
    start, end, node = result.stdout.split()
    return node, float(start), float(end)


def test_more_evaluations_in_flight_than_one_node_has_slots(ray_box, tmp_path):
    runs: list[tuple[str, float, float]] = []
    threads = [
        threading.Thread(
            target=lambda i=i: runs.append(_timed_sleep(ray_box, tmp_path / str(i), 3))
        )
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(runs) == 4
    assert len({node for node, _, _ in runs}) == 2  # both nodes evaluated
    overlap = max(sum(s <= t < e for _, s, e in runs) for _, t, _ in runs)
    assert overlap > 2, runs  # one node has 2 slots: more than 2 ran at once


def test_results_and_changed_files_come_back(ray_box, tmp_path):
    (tmp_path / "evaluate.py").write_text("print('x')\n")
    (tmp_path / "old.txt").write_text("old\n")
    command = (
        'echo \'{"score": 7}\' > "$CAMBRIAN_RESULT"; mkdir -p out; echo made > out/new.txt; '
        "rm old.txt; pwd; echo bye >&2; exit 3"
    )
    env = {"CAMBRIAN_RESULT": str(tmp_path / "res.json")}
    result = ray_box.run(
        command, workdir=tmp_path, limits=make_limits(SandboxConfig(), 30), env=env
    )
    assert (result.returncode, result.stderr) == (3, "bye\n")
    assert result.stdout.strip() != str(tmp_path)  # it ran in a copy on the node
    assert (tmp_path / "res.json").read_text() == '{"score": 7}\n'
    assert (tmp_path / "out" / "new.txt").read_text() == "made\n"
    assert not (tmp_path / "old.txt").exists()


def _kill_task_worker(cluster, times: int) -> list[int]:
    """SIGKILL the Ray worker running our task, ``times`` times in a row."""
    killed: list[int] = []
    end = time.monotonic() + 60
    while len(killed) < times and time.monotonic() < end:
        pids = [p for p in cluster.pids(role=TASK_TITLE) if p not in killed]
        if len(pids) == 1:
            time.sleep(0.5)  # let the task start its command
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
        time.sleep(0.1)
    return killed


def test_a_killed_worker_is_retried_on_another_node(cluster, ray_box, tmp_path):
    killed: list[int] = []
    killer = threading.Thread(target=lambda: killed.extend(_kill_task_worker(cluster, 1)))
    killer.start()
    command = "sleep 3; echo $CAMBRIAN_RAY_NODE"
    result = ray_box.run(command, workdir=tmp_path, limits=make_limits(SandboxConfig(), 30))
    killer.join()
    assert len(killed) == 1
    assert result.returncode == 0 and not result.lost
    first = result.stderr.split("attempt 1 on node ")[1].split(":")[0]
    assert "WorkerCrashedError" in result.stderr
    assert not result.stdout.startswith(first)  # the second attempt ran on the other node


def test_a_twice_lost_evaluation_is_recorded_with_its_reason(cluster, ray_box, tmp_path):
    killed: list[int] = []
    killer = threading.Thread(target=lambda: killed.extend(_kill_task_worker(cluster, 2)))
    killer.start()
    (tmp_path / "evaluate.py").write_text("import time; time.sleep(5); print('{\"score\": 1}')\n")
    evaluator = CommandEvaluator(
        EvaluatorConfig(command="python evaluate.py"), ray_box, make_limits(SandboxConfig(), 30)
    )
    evaluation = evaluator.evaluate(tmp_path, ["evaluate.py"])
    killer.join()
    assert len(killed) == 2
    assert evaluation.status is EvalStatus.ERROR
    assert evaluation.reason.startswith("lost: attempt 1 on node ")
    assert "attempt 2 on node " in evaluation.reason and "WorkerCrashedError" in evaluation.reason
    nodes = [part.split("on node ")[1].split(":")[0] for part in evaluation.reason.split(";")]
    assert nodes[0] != nodes[1]  # the retry ran on the other node


def test_unreachable_cluster_is_one_clear_error(tmp_path):
    if not ray_available():
        pytest.skip("Ray not installed")
    started = time.monotonic()
    config = ray_config("127.0.0.1:9", connect_timeout_s=20)
    with pytest.raises(
        SandboxError, match=r"Ray cluster at 127\.0\.0\.1:9.*ray start --head"
    ) as exc:
        get_sandbox(config, run_id="unreachable")
    assert "\n" not in str(exc.value)
    assert time.monotonic() - started < 40


def test_with_no_cluster_a_local_instance_is_started_and_stopped(tmp_path, monkeypatch, caplog):
    need_engine(ray_available(), "Ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    token_file = Path.home() / ".ray" / "auth_token"
    had_token = token_file.exists()
    box = get_sandbox(ray_config(None, connect_timeout_s=180), run_id="local")
    try:
        assert box.address == "local" and box.cluster["nodes"] == 1
        assert "started a local Ray instance" in caplog.text
        assert box.describe().startswith("ray cluster local: 1 node(s)")
        (tmp_path / "hi.py").write_text("print('hi from ray')\n")
        result = box.run("python hi.py", workdir=tmp_path, limits=make_limits(SandboxConfig(), 60))
        assert (result.returncode, result.stdout) == (0, "hi from ray\n"), result.stderr
    finally:
        box.close()
    end = time.monotonic() + 60  # the instance ends with the sandbox (Ray stops its own)
    while live_pids("cambrian-ray-local-", "cmdline") and time.monotonic() < end:
        time.sleep(0.2)
    assert not live_pids("cambrian-ray-local-", "cmdline")
    assert token_file.exists() == had_token  # nothing of it is left in the user's home


def test_no_node_that_fits_is_one_clear_error(cluster):
    config = ray_config(cluster.address).model_copy(update={"gpus_per_eval": 1.0})
    with pytest.raises(SandboxError, match=r"no Ray node has 1 CPU, 1 GPU"):
        get_sandbox(config, run_id="nogpu")


def test_a_work_dir_reached_through_a_link_gets_its_result_back(ray_box, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    workdir = tmp_path / "link"
    env = {"CAMBRIAN_RESULT": str(workdir / "res.json"), "CAMBRIAN_WORKDIR": str(workdir)}
    command = 'echo ok > "$CAMBRIAN_RESULT"; echo "$CAMBRIAN_WORKDIR"'
    limits = make_limits(SandboxConfig(), 30)
    result = ray_box.run(command, workdir=workdir, limits=limits, env=env)
    assert result.returncode == 0, result.stderr
    assert (real / "res.json").read_text() == "ok\n"
    assert str(tmp_path) not in result.stdout  # the node's own folder, not ours


def test_an_evaluation_that_cannot_start_is_recorded_lost_not_waited_for(cluster, tmp_path):
    # 2 CPUs per evaluation: each node holds one, so a third evaluation must queue
    config = ray_config(cluster.address, queue_timeout_s=5)
    box = get_sandbox(config.model_copy(update={"cpus": 2.0}), run_id="queue")
    limits = make_limits(SandboxConfig(), 60)
    try:
        for i in range(2):  # both nodes' workers started once
            (tmp_path / f"warm{i}").mkdir()
        warmups = [
            threading.Thread(
                target=box.run,
                args=("true",),
                kwargs={"workdir": tmp_path / f"warm{i}", "limits": limits},
            )
            for i in range(2)
        ]
        for thread in warmups:
            thread.start()
        for thread in warmups:
            thread.join(60)
        busy = []
        for i in range(2):
            (tmp_path / f"busy{i}").mkdir()
            thread = threading.Thread(
                target=box.run,
                args=("sleep 40",),
                kwargs={"workdir": tmp_path / f"busy{i}", "limits": limits},
                daemon=True,
            )
            thread.start()
            busy.append(thread)
        end = time.monotonic() + 30
        while len(cluster.pids(role=TASK_TITLE)) < 2 and time.monotonic() < end:
            time.sleep(0.2)
        started = time.monotonic()
        result = box.run("echo never", workdir=tmp_path, limits=limits)
        assert result.lost.startswith("not started 5s after it was submitted")
        assert result.returncode is None and "never" not in result.stdout
        assert time.monotonic() - started < 60  # given up on, not waited for
    finally:
        box.close()


@pytest.mark.parametrize("node_backend", ["process", "docker"])
def test_close_stops_evaluations_in_flight_on_the_nodes(cluster, tmp_path, node_backend):
    if node_backend == "docker":
        need_engine(docker_image() is not None, "Docker daemon")
    box = get_sandbox(ray_config(cluster.address, node_backend=node_backend), run_id="closing")
    marker = f"cambrian-close-{os.getpid()}-{time.monotonic_ns()}"
    results = []
    runner = threading.Thread(
        target=lambda: results.append(
            box.run(
                "sleep 60",
                workdir=tmp_path,
                limits=make_limits(SandboxConfig(), 90),
                env={"M": marker},
            )
        )
    )
    runner.start()
    end = time.monotonic() + 30
    while not live_pids(marker) and time.monotonic() < end:
        time.sleep(0.2)
    assert live_pids(marker), "the evaluation never started"
    started = time.monotonic()
    box.close()
    runner.join(60)
    assert results and results[0].returncode == -9
    assert time.monotonic() - started < 60  # not the evaluation's own end
    end = time.monotonic() + 15
    while live_pids(marker) and time.monotonic() < end:
        time.sleep(0.2)
    assert not live_pids(marker)


# Function mode on a node: the node's process sandbox keeps warm workers per Ray worker.
RAY_FUNCTION = """import os, sys
def evaluate(candidate):
    rc, out, err = candidate.run([sys.executable, "solve.py"], timeout_s=20)
    return {"score": float(out.split()[-1]), "metrics": {"node": os.environ["CAMBRIAN_RAY_NODE"]}}
"""


def test_function_mode_runs_on_the_nodes(ray_box, tmp_path):
    (tmp_path / "evaluate.py").write_text(RAY_FUNCTION)
    (tmp_path / "solve.py").write_text("print(6 * 7)\n")
    config = EvaluatorConfig(python="evaluate.py:evaluate")
    evaluator = CommandEvaluator(config, ray_box, make_limits(SandboxConfig(), 60))
    for _ in range(2):
        evaluation = evaluator.evaluate(tmp_path, ["evaluate.py"])
        assert evaluation.status is EvalStatus.OK, evaluation.reason + evaluation.output_tail
        assert evaluation.score == 42.0 and evaluation.metrics["node"]
