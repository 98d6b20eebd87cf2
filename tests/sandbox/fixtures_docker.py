"""Docker helpers for the sandbox tests: is a daemon here, and the image built once."""

from __future__ import annotations

import functools

from cambrian.errors import SandboxError
from cambrian.sandbox import build_base, connect, default_tag


@functools.cache
def docker_image() -> str | None:
    """Build ``cambrian/sandbox:py<X.Y>`` from this interpreter once per session.

    Always rebuilt (about 3 s), never reused: an image left by another interpreter or
    an older checkout would test the wrong Python. None without Docker.
    """
    try:
        client = connect()
    except SandboxError:
        return None
    build_base(client, default_tag())
    return default_tag()
