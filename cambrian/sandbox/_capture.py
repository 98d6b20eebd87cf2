"""Bounded output capture: keep the tail of a stream, never block the writer.

``OutputTail`` is backend-neutral (a container backend feeds it the chunks of its exec
stream). ``pump`` drains several pipes at once with ``poll`` until a wake-up fd (a pidfd)
fires or a deadline passes, so a candidate that prints a gigabyte neither blocks on a
full pipe nor grows our memory past about twice the cap.
"""

from __future__ import annotations

import errno
import math
import os
import select
import time
from collections.abc import Mapping

CHUNK = 64 * 1024


class OutputTail:
    """The last ``limit`` bytes of a stream, plus how many bytes were dropped before them.

    Args:
        limit: Bytes to keep (0 or less keeps nothing).
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(0, int(limit))
        self.total = 0
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> None:
        """Append ``chunk``, discarding older bytes beyond the cap."""
        self.total += len(chunk)
        self._buf += chunk
        if len(self._buf) > 2 * self.limit + CHUNK:
            del self._buf[: len(self._buf) - self.limit]

    def text(self) -> str:
        """The kept tail decoded as UTF-8, prefixed by a marker line when bytes were dropped."""
        data = bytes(self._buf[-self.limit :]) if self.limit else b""
        dropped = self.total - len(data)
        body = data.decode("utf-8", errors="replace")
        if dropped:
            return f"[... {dropped} bytes truncated ...]\n{body}"
        return body


def _read_into(fd: int, tail: OutputTail) -> bool:
    """Read what is available from ``fd`` into ``tail``; False once the pipe hit EOF."""
    try:
        chunk = os.read(fd, CHUNK)
    except BlockingIOError:
        return True
    except OSError as exc:
        if exc.errno == errno.EINTR:
            return True
        return False
    if not chunk:
        return False
    tail.feed(chunk)
    return True


def pump(
    pipes: Mapping[int, OutputTail],
    *,
    deadline: float,
    wake_fd: int | None = None,
    open_fds: set[int] | None = None,
) -> bool:
    """Drain ``pipes`` until ``wake_fd`` is readable, every pipe is closed, or the deadline.

    Args:
        pipes: Non-blocking read fds and the tail each one feeds.
        deadline: ``time.monotonic()`` value at which to give up.
        wake_fd: An fd whose readability ends the wait (a pidfd: the process exited).
            None: wait for EOF on every pipe.
        open_fds: The fds still open; updated in place as pipes reach EOF (default: all).

    Returns:
        True when ``wake_fd`` fired (or, without one, when every pipe reached EOF);
        False when the deadline passed first.
    """
    live = set(pipes) if open_fds is None else open_fds
    poller = select.poll()
    for fd in live:
        poller.register(fd, select.POLLIN)
    if wake_fd is not None:
        poller.register(wake_fd, select.POLLIN)
    while wake_fd is not None or live:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        for fd, _ in poller.poll(math.ceil(remaining * 1000)):
            if fd == wake_fd:
                return True
            if fd in live and not _read_into(fd, pipes[fd]):
                live.discard(fd)
                poller.unregister(fd)
    return True
