"""GPU slots without a GPU: the allocator, the device requests and CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

import threading
import time

import pytest

from cambrian.config import SandboxConfig
from cambrian.errors import SandboxError
from cambrian.sandbox import GpuSlots, ProcessSandbox, gpu_slots, list_gpus, make_limits
from cambrian.sandbox._container import container_spec


def test_each_evaluation_gets_its_own_gpus_and_waits_for_a_free_slot():
    slots = GpuSlots(["0", "1", "2", "3"], 2)
    held, order = [], []
    with slots.acquire() as a, slots.acquire() as b:
        assert len(a) == len(b) == 2 and not set(a) & set(b)
        assert all(n == 1 for n in slots.in_use().values())

        def third():
            with slots.acquire(timeout=5) as c:
                order.append("got")
                held.append(c)

        thread = threading.Thread(target=third)
        thread.start()
        time.sleep(0.2)
        assert order == []  # waits: every GPU is taken
        order.append("released")
    thread.join(5)
    assert order == ["released", "got"] and len(held[0]) == 2
    assert all(n == 0 for n in slots.in_use().values())


def test_a_gpu_is_shared_only_when_a_fraction_is_configured():
    shared = GpuSlots(["0"], 0.5)
    with shared.acquire() as a, shared.acquire() as b:
        assert a == b == ("0",)
        with pytest.raises(SandboxError, match="no free GPU slot"):
            with shared.acquire(timeout=0.05):
                pass
    exclusive = GpuSlots(["0"], 1)
    with exclusive.acquire():
        with pytest.raises(SandboxError):
            with exclusive.acquire(timeout=0.05):
                pass


def test_concurrent_threads_never_overlap():
    slots = GpuSlots(["0", "1", "2"], 1)
    busy, errors = set(), []
    lock = threading.Lock()

    def work():
        for _ in range(20):
            with slots.acquire() as (gpu,):
                with lock:
                    if gpu in busy:
                        errors.append(gpu)
                    busy.add(gpu)
                time.sleep(0.001)
                with lock:
                    busy.discard(gpu)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_asking_for_gpus_where_there_are_none_fails_before_the_run():
    if list_gpus():
        pytest.skip("this machine has GPUs")
    with pytest.raises(SandboxError, match="no GPU is available"):
        ProcessSandbox(SandboxConfig(gpus_per_eval=1))
    with pytest.raises(SandboxError, match="only 1 GPU"):
        gpu_slots(SandboxConfig(gpus_per_eval=2, gpu_ids=("0",)))
    assert gpu_slots(SandboxConfig()) is None


def test_process_backend_sets_cuda_visible_devices(tmp_path):
    config = SandboxConfig(gpus_per_eval=1, gpu_ids=("3",))
    box = ProcessSandbox(config, isolation="rlimits")
    result = box.run("echo $CUDA_VISIBLE_DEVICES", workdir=tmp_path, limits=make_limits(config, 5))
    assert result.stdout == "3\n"


def test_docker_gets_a_device_request_for_the_slot_gpus():
    config = SandboxConfig(gpus_per_eval=2, gpu_ids=("0", "1"))
    spec = container_spec(
        config, make_limits(config, 5), image="i", run_id="r", mounts=[], gpus=("0", "1"), path="/"
    )
    (request,) = spec["device_requests"]
    assert request["DeviceIDs"] == ["0", "1"] and request["Capabilities"] == [["gpu"]]
    assert spec["network_mode"] == "none" and spec["read_only"] and spec["cap_drop"] == ["ALL"]
    assert spec["mem_limit"] == spec["memswap_limit"] == "2048m"
    assert "device_requests" not in container_spec(
        SandboxConfig(), make_limits(config, 5), image="i", run_id="r", mounts=[], gpus=(), path="/"
    )


def test_gpu_fraction_must_be_one_over_k():
    with pytest.raises(ValueError, match="1/k"):
        SandboxConfig(gpus_per_eval=0.3)
    with pytest.raises(ValueError, match="whole number"):
        SandboxConfig(gpus_per_eval=1.5)
