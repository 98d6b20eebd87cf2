"""Responders for the scripted server: fixed replays and deterministic number mutations.

A responder maps the request's chat messages to a reply text or a ``Fault``.
"""

from __future__ import annotations

import itertools
import random
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_FILE_BLOCK = re.compile(
    r"^### File: (?P<path>[^\n]+?)[ \t]*\n```[^\n]*\n(?P<body>.*?)^```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
# A decimal literal that is not part of an identifier, a hex literal or a longer number.
_NUMBER = re.compile(r"(?<![\w.])(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.])")
_COMMENT = re.compile(r"#|//")
_NO_EDIT = "I looked at the file and found no numeric constant worth tuning; no change proposed."


@dataclass(frozen=True)
class Fault:
    """An injected failure for one request to a ``ScriptedLLMServer``.

    Attributes:
        status: HTTP status to answer with; 200 answers ``body`` as a normal reply.
        body: Error message (or reply text when ``status`` is 200).
        delay_s: Seconds to wait before answering (a hang when long).
        retry_after: Value of the ``Retry-After`` header, in seconds (None: no header).
        drop: Close the connection without any response.
        raw: Send this exact body with ``status`` instead of a well-formed answer
            (garbage, truncated JSON).
        trickle_s: With ``raw``, pause this long between bytes (a slow trickle).
    """

    status: int = 500
    body: str = "injected fault"
    delay_s: float = 0.0
    retry_after: float | None = None
    drop: bool = False
    raw: str | None = None
    trickle_s: float = 0.0


Responder = Callable[[list[dict[str, Any]]], "str | Fault"]


def replay(replies: Sequence[str | Fault]) -> Responder:
    """Answer with ``replies`` in order, starting over after the last one.

    Args:
        replies: Reply texts or faults; must not be empty.

    Returns:
        A thread-safe responder.

    Raises:
        ValueError: If ``replies`` is empty.
    """
    if not replies:
        raise ValueError("replies must not be empty")
    cycle = itertools.cycle(list(replies))
    lock = threading.Lock()

    def respond(messages: list[dict[str, Any]]) -> str | Fault:
        with lock:
            return next(cycle)

    return respond


def mutate_numbers(seed: int = 0) -> Responder:
    """Answer with one SEARCH/REPLACE edit that perturbs a numeric literal.

    The first ``### File: <path>`` block with a fenced code body in the last user message
    is the file. A line holding a numeric literal is picked (inside the
    EVOLVE-BLOCK-START/END region when the file has one) and one literal on it is
    perturbed. Without a numeric literal the reply is prose with no edit.

    Args:
        seed: Seed of the responder's own RNG, advanced on every call.

    Returns:
        A thread-safe, deterministic (for a given request order) responder.
    """
    rng = random.Random(seed)
    lock = threading.Lock()

    def respond(messages: list[dict[str, Any]]) -> str | Fault:
        found = _first_file(_last_user_text(messages))
        if found is None:
            return _NO_EDIT
        path, body = found
        with lock:
            edit = _mutate_file(body, rng)
        if edit is None:
            return _NO_EDIT
        old, new = edit
        return f"{path}\n<<<<<<< SEARCH\n{old}\n=======\n{new}\n>>>>>>> REPLACE\n"

    return respond


def _last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The text of the last user message ("" when there is none)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content") or ""
            if isinstance(content, list):
                parts = [p.get("text", "") for p in content if isinstance(p, Mapping)]
                return "\n".join(parts)
            return str(content)
    return ""


def _first_file(text: str) -> tuple[str, str] | None:
    """The path and content of the first ``### File:`` block in ``text``."""
    match = _FILE_BLOCK.search(text)
    if match is None:
        return None
    return match.group("path").strip(), match.group("body")


def _editable_lines(lines: list[str]) -> list[str]:
    """Lines inside the EVOLVE-BLOCK region, or all lines when there is none."""
    start = next((i for i, line in enumerate(lines) if "EVOLVE-BLOCK-START" in line), None)
    if start is None:
        return lines
    end = next(
        (i for i in range(start + 1, len(lines)) if "EVOLVE-BLOCK-END" in lines[i]), len(lines)
    )
    return lines[start + 1 : end]


def _code_numbers(line: str) -> list[re.Match[str]]:
    """Numeric literals on ``line`` before any ``#`` or ``//`` comment."""
    comment = _COMMENT.search(line)
    code = line[: comment.start()] if comment else line
    return list(_NUMBER.finditer(code))


def _mutate_file(body: str, rng: random.Random) -> tuple[str, str] | None:
    """Pick a line with a numeric literal and return it with its perturbed version."""
    lines = body.splitlines()
    candidates = [line for line in _editable_lines(lines) if _code_numbers(line)]
    if not candidates:
        return None
    unique = [line for line in candidates if lines.count(line) == 1]
    line = rng.choice(unique or candidates)
    match = rng.choice(_code_numbers(line))
    new_literal = _perturb(match.group(), rng)
    return line, line[: match.start()] + new_literal + line[match.end() :]


def _perturb(literal: str, rng: random.Random) -> str:
    """A different literal of the same kind: ints stay non-negative ints."""
    if re.fullmatch(r"\d+", literal):
        value = int(literal)
        if rng.random() < 0.5 and value > 2:
            new = round(value * rng.uniform(0.5, 1.5))
        else:
            new = value + rng.choice((-2, -1, 1, 2))
        new = max(new, 0)
        if new == value:
            new = value + 1
        return str(new)
    value = float(literal)
    for _ in range(8):
        new_text = f"{value * rng.uniform(0.5, 1.5):.6g}" if value else f"{rng.random():.3g}"
        if not re.search(r"[.eE]", new_text):
            new_text += ".0"
        if float(new_text) != value:
            return new_text
    return repr(value + 1.0)
