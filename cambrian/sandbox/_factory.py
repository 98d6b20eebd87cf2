"""``get_sandbox``: build the configured backend from a short name or a dotted path."""

from __future__ import annotations

import importlib

from cambrian.config import SandboxConfig
from cambrian.errors import ConfigError
from cambrian.types import Sandbox

BACKENDS = {
    "auto": "cambrian.sandbox._auto.auto_sandbox",
    "docker": "cambrian.sandbox._docker.DockerSandbox",
    "process": "cambrian.sandbox._process.ProcessSandbox",
    "ray": "cambrian.sandbox._ray.RaySandbox",
}


def _load(path: str) -> type:
    """Import ``package.module.Class`` lazily; ``ConfigError`` if it does not resolve."""
    module_name, _, attr = path.rpartition(".")
    valid = ", ".join(sorted(BACKENDS))
    if not module_name:
        raise ConfigError(
            f"unknown sandbox.backend {path!r}: use one of {valid} or a dotted class path"
        )
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"sandbox.backend {path!r} cannot be imported ({exc}); use one of {valid} "
            "or a dotted class path"
        ) from None


def get_sandbox(config: SandboxConfig, *, run_id: str = "") -> Sandbox:
    """Build the sandbox named by ``config.backend``.

    Args:
        config: The ``[sandbox]`` section; ``backend`` is a short name (``auto``,
            ``docker``, ``process``, ``ray``) or a dotted class path whose constructor
            takes ``(config, *, run_id=...)``.
        run_id: The evolution run's id, handed to the backend.

    Returns:
        A ready sandbox (backends probe their engine lazily).

    Raises:
        ConfigError: The backend name is unknown or its class cannot be imported.
        SandboxError: The backend cannot work here (no Docker daemon, no image, no GPU).
    """
    cls = _load(BACKENDS.get(config.backend, config.backend))
    return cls(config, run_id=run_id)
