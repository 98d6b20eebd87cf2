"""A real OpenAI-compatible HTTP server whose replies come from a Python responder.

Used by tests and benchmarks in place of a model: it speaks the chat-completions wire
format (plain JSON and SSE streaming), so the real client stack runs against it. Faults
(error statuses, hangs, dropped connections) are injected by returning a ``Fault``.

Run it standalone with ``python -m cambrian.llm._scripted --port P --mode mutate``; the
first stdout line is its base URL.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import signal
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from cambrian.llm._responders import Fault, Responder, mutate_numbers, replay

_MODEL = "scripted"


class ScriptedLLMServer:
    """An OpenAI-compatible chat server on loopback, answering with ``responder``.

    Endpoints: ``POST /v1/chat/completions`` (with or without ``stream``),
    ``POST /v1/embeddings`` (deterministic hashed bag-of-words vectors, so similar texts
    get similar vectors), ``GET /v1/models`` and ``GET /health``. Requests are served
    concurrently, one thread each.

    Example:
        >>> with ScriptedLLMServer(replay(["hello"])) as server:
        ...     url = server.url  # http://127.0.0.1:<port>/v1

    Args:
        responder: Maps the request's messages to a reply text or a ``Fault``; it is
            called from several threads at once.
        host: Address to bind.
        port: Port to bind (0: a free port).
        record: Keep every chat-completion request body (see ``bodies``).
    """

    def __init__(
        self, responder: Responder, *, host: str = "127.0.0.1", port: int = 0, record: bool = False
    ) -> None:
        if not callable(responder):
            raise ValueError("responder must be callable")
        self._responder = responder
        self._record = record
        self._host = host
        self._port = port
        self._httpd: _Httpd | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the API, e.g. ``http://127.0.0.1:8123/v1``."""
        if self._httpd is None:
            raise ValueError("server is not started; call start() first")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def requests(self) -> int:
        """Number of chat-completion requests received so far (faulted ones included)."""
        return self._httpd.requests if self._httpd is not None else 0

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of the chat-completion requests received (with ``record=True``)."""
        return list(self._httpd.bodies) if self._httpd is not None else []

    def start(self) -> str:
        """Bind and serve in a daemon thread.

        Returns:
            The base URL (``.url``).
        """
        if self._httpd is None:
            self._httpd = _Httpd((self._host, self._port), _Handler, self._responder)
            self._httpd.record = self._record
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="scripted-llm",
                daemon=True,
            )
            self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving and close the socket. Hung handlers are abandoned (daemon threads)."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> ScriptedLLMServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _Httpd(ThreadingHTTPServer):
    """The HTTP server holding the responder and the request counter."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type, responder: Responder) -> None:
        super().__init__(address, handler)
        self.responder = responder
        self.requests = 0
        self.record = False
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def handle_error(self, request: object, client_address: object) -> None:
        """Stay quiet when a client hangs up mid-answer (killed runs, timeouts)."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def count(self, body: dict[str, Any]) -> None:
        """Count one chat-completion request, and keep its body when recording."""
        with self._lock:
            self.requests += 1
            if self.record:
                self.bodies.append(body)


class _Handler(BaseHTTPRequestHandler):
    """Serves one connection; keeps it alive between non-streaming requests."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle's algorithm on, the body waits
    # for the client's delayed ACK (about 40 ms a reply on a kept-alive connection).
    disable_nagle_algorithm = True
    server: _Httpd

    def log_message(self, format: str, *args: Any) -> None:
        """Stay silent: the benchmark pushes hundreds of requests per second."""

    def do_GET(self) -> None:
        """Serve ``/health`` and ``/v1/models``."""
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in ("/health", "/v1/health"):
            self._send_json(200, {"status": "ok"})
        elif path in ("/v1/models", "/models"):
            model = {"id": _MODEL, "object": "model", "created": 0, "owned_by": "cambrian"}
            self._send_json(200, {"object": "list", "data": [model]})
        else:
            self._send_json(404, _error(f"no route for GET {path}", 404))

    def do_POST(self) -> None:
        """Serve ``/v1/chat/completions``."""
        path = self.path.split("?", 1)[0].rstrip("/")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if path in ("/v1/embeddings", "/embeddings"):
            self._embeddings(raw)
            return
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._send_json(404, _error(f"no route for POST {path}", 404))
            return
        try:
            request = json.loads(raw or b"{}")
        except ValueError:
            request = {}
        self.server.count(request if isinstance(request, dict) else {})
        try:
            messages = list(request["messages"])
        except (KeyError, TypeError):
            self._send_json(400, _error("body must be JSON with a 'messages' list", 400))
            return
        reply = self.server.responder(messages)
        if isinstance(reply, Fault):
            if self._fault(reply):
                return
            reply = reply.body
        self._answer(request, messages, str(reply))

    def _embeddings(self, raw: bytes) -> None:
        """Answer an embeddings request with one hashed bag-of-words vector per input."""
        try:
            request = json.loads(raw or b"{}")
            inputs = request["input"]
        except (ValueError, KeyError, TypeError):
            self._send_json(400, _error("body must be JSON with an 'input'", 400))
            return
        texts = [inputs] if isinstance(inputs, str) else [str(text) for text in inputs]
        data = [
            {"object": "embedding", "index": i, "embedding": _bag_vector(text)}
            for i, text in enumerate(texts)
        ]
        tokens = sum(len(text.split()) for text in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        model = str(request.get("model") or _MODEL)
        self._send_json(200, {"object": "list", "data": data, "model": model, "usage": usage})

    def _fault(self, fault: Fault) -> bool:
        """Apply ``fault``; True when the request was fully answered (or dropped)."""
        if fault.delay_s > 0:
            time.sleep(fault.delay_s)
        if fault.drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return True
        if fault.raw is not None:
            self._send_raw(fault.status, fault.raw.encode(), fault.trickle_s)
            return True
        if fault.status == 200:
            return False
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        self._send_json(fault.status, _error(fault.body, fault.status), headers)
        return True

    def _send_raw(self, status: int, body: bytes, trickle_s: float) -> None:
        """Send ``body`` verbatim as JSON, one byte per ``trickle_s`` when trickling."""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            if trickle_s <= 0:
                self.wfile.write(body)
                return
            for byte in body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(trickle_s)
        except OSError:  # the client gave up: that is what a trickle is for
            self.close_connection = True

    def _answer(self, request: dict[str, Any], messages: list[Any], text: str) -> None:
        """Answer with ``text`` as a completion, streamed when the request asks for it."""
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in messages)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(text.split()),
            "total_tokens": prompt_tokens + len(text.split()),
        }
        model = str(request.get("model") or _MODEL)
        head = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "created": int(time.time()),
            "model": model,
        }
        if request.get("stream"):
            options = request.get("stream_options") or {}
            self._stream(head, text, usage if options.get("include_usage") else None)
            return
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
        }
        body = {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
        self._send_json(200, body)

    def _stream(self, head: dict[str, Any], text: str, usage: dict[str, int] | None) -> None:
        """Send ``text`` as SSE chunks ending with ``data: [DONE]``."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        base = {**head, "object": "chat.completion.chunk"}
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        deltas += [{"content": piece} for piece in _pieces(text)]
        events = [
            {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            for delta in deltas
        ]
        events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if usage is not None:
            events.append({**base, "choices": [], "usage": usage})
        payload = "".join(f"data: {json.dumps(event)}\n\n" for event in events)
        self.wfile.write((payload + "data: [DONE]\n\n").encode())
        self.wfile.flush()

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """Send one JSON response with a Content-Length (keep-alive safe)."""
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _error(message: str, status: int) -> dict[str, Any]:
    """An OpenAI-style error body."""
    kind = "invalid_request_error" if 400 <= status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}


def _bag_vector(text: str, dims: int = 64) -> list[float]:
    """A unit vector counting the text's tokens in ``dims`` hashed buckets (deterministic)."""
    vector = [0.0] * dims
    for token in re.findall(r"\w+|[^\w\s]", text):
        vector[int(hashlib.blake2b(token.encode(), digest_size=4).hexdigest(), 16) % dims] += 1
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def _pieces(text: str, size: int = 16) -> list[str]:
    """Split ``text`` into stream chunks of about ``size`` characters."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def main(argv: list[str] | None = None) -> int:
    """Serve a scripted model until SIGTERM or SIGINT; print the base URL first."""
    parser = argparse.ArgumentParser(prog="python -m cambrian.llm._scripted")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", choices=("mutate", "replay"), default="mutate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reply-file", action="append", default=[], type=Path)
    args = parser.parse_args(argv)
    if args.mode == "replay":
        if not args.reply_file:
            parser.error("--mode replay needs at least one --reply-file")
        responder = replay([path.read_text() for path in args.reply_file])
    else:
        responder = mutate_numbers(args.seed)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with ScriptedLLMServer(responder, host=args.host, port=args.port) as server:
        print(server.url, flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
