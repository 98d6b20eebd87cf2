"""One ``docker exec``: start it, demultiplex its output into tails, stop at a deadline.

``exec_run`` has no timeout of its own, so we read the raw attach socket ourselves with
``poll``. The exec's main process is watched through a pidfd when the daemon runs on
this host (its pid comes from ``exec_inspect``), else by polling ``exec_inspect``: a
background child holding the output pipe open must not keep the evaluation alive.
"""

from __future__ import annotations

import math
import os
import select
import socket
import struct
import time
from typing import Any

from cambrian.sandbox._capture import OutputTail

_HEADER = struct.Struct(">BxxxL")
_DRAIN_GRACE_S = 0.25
_INSPECT_EVERY_S = 0.05


class _Demux:
    """Splits Docker's multiplexed stream (8-byte frame headers) into stdout and stderr."""

    def __init__(self, out: OutputTail, err: OutputTail) -> None:
        self._tails = {1: out, 2: err}
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        """Consume ``data``; complete frames go to their tail."""
        self._buf += data
        while len(self._buf) >= _HEADER.size:
            kind, size = _HEADER.unpack_from(self._buf)
            end = _HEADER.size + size
            if len(self._buf) < end:
                # Only a frame's remainder is buffered, never a whole gigabyte.
                if len(self._buf) > 1 << 20:
                    self._tails.get(kind, self._tails[1]).feed(bytes(self._buf[8:]))
                    self._buf = bytearray(_HEADER.pack(kind, end - len(self._buf)))
                return
            self._tails.get(kind, self._tails[1]).feed(bytes(self._buf[_HEADER.size : end]))
            del self._buf[:end]


def _pidfd(api: Any, exec_id: str) -> int | None:
    """A pidfd on the exec's main process when it runs on this host, else None."""
    try:
        pid = api.exec_inspect(exec_id).get("Pid") or 0
        return os.pidfd_open(pid) if pid > 0 else None
    except (OSError, AttributeError):
        return None


def _read(sock: socket.socket, demux: _Demux) -> bool:
    """Read what is available; False at EOF."""
    try:
        data = sock.recv(1 << 16)
    except (BlockingIOError, InterruptedError):
        return True
    except OSError:
        return False
    if not data:
        return False
    demux.feed(data)
    return True


def run_exec(api: Any, exec_id: str, out: OutputTail, err: OutputTail, timeout_s: float) -> bool:
    """Start exec ``exec_id`` and drain it until its main process ends or ``timeout_s``.

    The clock starts once the daemon has started the process, so a busy daemon does not
    eat into the candidate's time.

    Returns:
        True when the main process ended before the deadline, False on timeout.
    """
    handle = api.exec_start(exec_id, socket=True)
    deadline = time.monotonic() + timeout_s
    sock: socket.socket = getattr(handle, "_sock", handle)
    demux = _Demux(out, err)
    try:
        sock.shutdown(socket.SHUT_WR)  # without it the daemon holds the stream for a second
        sock.setblocking(False)
        pidfd = _pidfd(api, exec_id)
        try:
            ended = _wait(api, exec_id, sock, demux, pidfd, deadline)
        finally:
            if pidfd is not None:
                os.close(pidfd)
        if ended:
            _drain(sock, demux, time.monotonic() + _DRAIN_GRACE_S)
        return ended
    finally:
        sock.close()
        handle.close()


def _wait(
    api: Any, exec_id: str, sock: socket.socket, demux: _Demux, pidfd: int | None, deadline: float
) -> bool:
    """Read output until the main process exits (True) or the deadline passes (False)."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    sock_open = True
    while True:
        now = time.monotonic()
        if now >= deadline:
            return False
        wait_s = deadline - now if pidfd is not None else min(deadline - now, _INSPECT_EVERY_S)
        events = poller.poll(math.ceil(wait_s * 1000))
        for fd, _ in events:
            if fd == pidfd:
                return True
            if sock_open and not _read(sock, demux):
                sock_open = False
                poller.unregister(sock.fileno())
        if pidfd is None and (not events or not sock_open):
            if not api.exec_inspect(exec_id).get("Running"):
                return True


def _drain(sock: socket.socket, demux: _Demux, until: float) -> None:
    """Read the output still in flight, up to EOF or ``until``."""
    while (left := until - time.monotonic()) > 0:
        ready, _, _ = select.select([sock], [], [], left)
        if not ready or not _read(sock, demux):
            return
