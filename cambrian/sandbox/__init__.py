"""Where candidate code runs.

``get_sandbox(config)`` builds the configured backend (``auto``: Docker when usable, else
the process backend); ``DockerSandbox`` runs commands in locked-down containers;
``ProcessSandbox`` runs them as local processes under bubblewrap (or rlimits only). The
command is the evaluator; it starts candidate code in the inner tier through
``$CAMBRIAN_RUN`` (``runner/cambrian_run.py``);
``make_limits`` turns the sandbox config section and a timeout into per-run ``Limits``;
``GpuSlots`` hands each concurrent evaluation its own GPUs.
"""

from cambrian.sandbox._container import LABEL_RUN, connect, leftovers, remove_container
from cambrian.sandbox._docker import DockerSandbox
from cambrian.sandbox._factory import get_sandbox
from cambrian.sandbox._gpu import GpuSlots, gpu_slots, list_gpus
from cambrian.sandbox._image import build_base, build_derived, default_tag, pip_tag
from cambrian.sandbox._limits import make_limits
from cambrian.sandbox._process import ProcessSandbox
from cambrian.sandbox._workdir import remove_tree

__all__ = [
    "LABEL_RUN",
    "DockerSandbox",
    "GpuSlots",
    "ProcessSandbox",
    "build_base",
    "build_derived",
    "connect",
    "default_tag",
    "get_sandbox",
    "gpu_slots",
    "leftovers",
    "list_gpus",
    "make_limits",
    "remove_tree",
    "pip_tag",
    "remove_container",
]
