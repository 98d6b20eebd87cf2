"""GPU evaluation slots: which GPUs each concurrent evaluation gets.

Evaluations run in worker threads. ``GpuSlots.acquire`` blocks until enough GPUs are
free, so two evaluations never share a GPU unless the config asks for a fraction
(``gpus_per_eval = 1/k`` lets k evaluations share one GPU).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from cambrian.config import SandboxConfig
from cambrian.errors import SandboxError

_SMI_TIMEOUT_S = 20.0


def list_gpus() -> list[str]:
    """Indices of the GPUs ``nvidia-smi -L`` lists (empty when it is missing or fails)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        done = subprocess.run(
            [smi, "-L"], capture_output=True, text=True, timeout=_SMI_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    lines = [line for line in done.stdout.splitlines() if line.startswith("GPU ")]
    return [line.split()[1].rstrip(":") for line in lines] if done.returncode == 0 else []


class GpuSlots:
    """A thread-safe allocator of GPUs to concurrent evaluations.

    Args:
        gpu_ids: The GPUs available (device indices or UUIDs).
        per_eval: GPUs per evaluation: a whole number, or a fraction 1/k to share one GPU
            between k evaluations.

    Raises:
        SandboxError: More GPUs per evaluation than there are GPUs.
        ValueError: ``per_eval`` is not positive.
    """

    def __init__(self, gpu_ids: Sequence[str], per_eval: float) -> None:
        if not per_eval > 0:
            raise ValueError(f"per_eval must be positive, got {per_eval!r}")
        self.gpu_ids = tuple(gpu_ids)
        self._count = max(1, int(per_eval))
        self._capacity = 1 if per_eval >= 1 else round(1 / per_eval)
        if self._count > len(self.gpu_ids):
            raise SandboxError(
                f"sandbox.gpus_per_eval={per_eval:g} but only {len(self.gpu_ids)} GPU(s) "
                f"available ({', '.join(self.gpu_ids) or 'none'}): lower it or set sandbox.gpu_ids"
            )
        self._free = dict.fromkeys(self.gpu_ids, self._capacity)
        self._cond = threading.Condition()

    def _pick(self) -> list[str] | None:
        """The GPUs to hand out now (most free share first), or None if too few are free."""
        ready = sorted((g for g in self.gpu_ids if self._free[g] > 0), key=lambda g: -self._free[g])
        return ready[: self._count] if len(ready) >= self._count else None

    @contextmanager
    def acquire(self, timeout: float | None = None) -> Iterator[tuple[str, ...]]:
        """Hold GPUs for the duration of the ``with`` block, waiting for free ones.

        Args:
            timeout: Seconds to wait at most (None: forever).

        Yields:
            The GPU ids this evaluation may use.

        Raises:
            SandboxError: No slot became free within ``timeout``.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._pick() is not None, timeout):
                raise SandboxError(f"no free GPU slot within {timeout:g}s")
            picked = self._pick() or []
            for gpu in picked:
                self._free[gpu] -= 1
        try:
            yield tuple(picked)
        finally:
            with self._cond:
                for gpu in picked:
                    self._free[gpu] += 1
                self._cond.notify_all()

    def in_use(self) -> dict[str, int]:
        """How many evaluations hold each GPU now."""
        with self._cond:
            return {g: self._capacity - free for g, free in self._free.items()}


def gpu_slots(config: SandboxConfig) -> GpuSlots | None:
    """The allocator the config asks for, or None when ``gpus_per_eval`` is 0.

    Raises:
        SandboxError: GPUs are asked for but none is listed or configured.
    """
    if not config.gpus_per_eval:
        return None
    ids = list(config.gpu_ids) if config.gpu_ids is not None else list_gpus()
    if not ids:
        raise SandboxError(
            f"sandbox.gpus_per_eval={config.gpus_per_eval:g} but no GPU is available "
            "(nvidia-smi -L lists none): set sandbox.gpus_per_eval = 0 or run on a GPU machine"
        )
    return GpuSlots(ids, config.gpus_per_eval)


@contextmanager
def gpu_env(
    slots: GpuSlots | None, env: Mapping[str, str] | None
) -> Iterator[Mapping[str, str] | None]:
    """``env``, with the GPUs of one slot held while the run lasts (if there are GPUs)."""
    if slots is None:
        yield env
        return
    with slots.acquire() as gpus:
        yield {**(env or {}), "CUDA_VISIBLE_DEVICES": ",".join(gpus)}
