"""Docker helpers for the sandbox tests: is a daemon here, and the image built once."""

from __future__ import annotations

import functools

from cambrian.errors import SandboxError
from cambrian.sandbox._container import connect
from cambrian.sandbox._image import build_base, default_tag


@functools.cache
def docker_image() -> str | None:
    """Build ``cambrian/sandbox:py<X.Y>`` once per session if missing; None without Docker."""
    try:
        client = connect()
    except SandboxError:
        return None
    import docker

    try:
        client.images.get(default_tag())
    except docker.errors.ImageNotFound:
        build_base(client, default_tag())
    return default_tag()
