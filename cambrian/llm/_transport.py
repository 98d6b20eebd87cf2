"""How one chat request reaches the model: the openai client, or litellm.

An ``openai/...`` model with an ``api_base`` and a name litellm does not know is an
OpenAI-compatible server (a local llama.cpp or vLLM, a proxy): the ``openai`` client
talks to it directly, which costs a few milliseconds a call where litellm's layers cost
tens, and chat with such servers never imports litellm (seconds of start-up; embedding
novelty still does). Every other model goes through litellm. Both raise the ``openai``
error classes (litellm's subclass them), so the client's retry rules apply unchanged.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

#: litellm's offline cost map, shipped inside its package.
COST_MAP_FILE = "model_prices_and_context_window_backup.json"


class BadResponse(Exception):
    """The endpoint answered 200 with a body that is not a chat completion."""


@dataclass(frozen=True)
class Reply:
    """What the client needs from a response; token counts are the server's claims."""

    text: str
    prompt_tokens: Any = 0
    completion_tokens: Any = 0


def is_direct(model: str, api_base: str | None) -> bool:
    """Whether the openai client serves ``model``: an OpenAI-compatible ``api_base``.

    A model litellm's cost map knows (``openai/gpt-4o-mini``, ``openai/o3-mini``, ...)
    stays with litellm even behind an ``api_base``: litellm maps its parameters (o-series
    models take ``max_completion_tokens``, some no ``temperature``).
    """
    if not (model.startswith("openai/") and api_base):
        return False
    bare = model.split("/", 1)[1]
    return bare not in read_cost_map() and model not in read_cost_map()


def get_transport(model: str, api_base: str | None) -> OpenAITransport | LiteLLMTransport:
    """The transport for ``model`` at ``api_base`` (see ``is_direct``)."""
    return OpenAITransport() if is_direct(model, api_base) else LiteLLMTransport()


class LiteLLMTransport:
    """Requests through ``litellm.acompletion``; litellm is imported on the first call."""

    def __init__(self) -> None:
        self._litellm: ModuleType | None = None

    async def load(self) -> None:
        """Import litellm once, in a thread so the event loop keeps running."""
        if self._litellm is None:
            self._litellm = await asyncio.to_thread(import_litellm)

    async def aclose(self) -> None:
        """Nothing to close: litellm keeps its own connection pools."""

    def cost_map(self) -> dict[str, Any]:
        """``litellm.model_cost`` (call ``load`` first)."""
        assert self._litellm is not None, "load() first"
        return self._litellm.model_cost

    async def send(self, request: dict[str, Any]) -> Reply:
        """One attempt of ``request`` (model, messages, temperature, ... api_key)."""
        await self.load()
        assert self._litellm is not None
        response = await self._litellm.acompletion(
            **request, num_retries=0, max_retries=0, drop_params=True
        )
        choices = response.choices or []
        usage = getattr(response, "usage", None)
        return Reply(
            text=(choices[0].message.content if choices else None) or "",
            prompt_tokens=getattr(usage, "prompt_tokens", 0),
            completion_tokens=getattr(usage, "completion_tokens", 0),
        )


class OpenAITransport:
    """Requests through one ``openai.AsyncOpenAI`` client per event loop."""

    def __init__(self) -> None:
        self._openai: ModuleType | None = None
        # The client and the event loop it serves (held, so its id is never reused).
        self._current: tuple[asyncio.AbstractEventLoop, Any] | None = None

    async def load(self) -> None:
        """Import openai once, in a thread (``is_direct`` has read the cost map already)."""
        if self._openai is None:
            self._openai = await asyncio.to_thread(_import_openai)

    def cost_map(self) -> dict[str, Any]:
        """The offline cost map of litellm, read from its file without importing litellm."""
        return read_cost_map()

    async def send(self, request: dict[str, Any]) -> Reply:
        """One attempt of ``request``; the reply's body is parsed here, defensively."""
        await self.load()
        client = self._client(request["api_base"], request.get("api_key"), request["timeout"])
        raw = await client.chat.completions.with_raw_response.create(
            model=request["model"].split("/", 1)[1],
            messages=request["messages"],
            temperature=request["temperature"],
            max_tokens=request["max_tokens"],
        )
        return parse_reply(raw.http_response.content)

    async def aclose(self) -> None:
        """Close the client of this event loop, if it has one."""
        if self._current is not None and self._current[0] is asyncio.get_running_loop():
            client, self._current = self._current[1], None
            await client.close()

    def _client(self, api_base: str, api_key: str | None, timeout: float) -> Any:
        """The client of this event loop (an httpx pool is bound to the loop it starts in).

        A client left by an earlier loop is dropped: its connections went with that loop.
        """
        assert self._openai is not None
        loop = asyncio.get_running_loop()
        if self._current is None or self._current[0] is not loop:
            # Our own pool: openai's default one closes itself when collected, as a task
            # of whatever loop runs then, on sockets of a loop that may be gone.
            pool = self._openai.DefaultAsyncHttpxClient(timeout=timeout)
            client = self._openai.AsyncOpenAI(
                base_url=api_base,
                api_key=api_key,
                max_retries=0,
                timeout=timeout,
                http_client=pool,
            )
            self._current = (loop, client)
        return self._current[1]


def parse_reply(body: bytes) -> Reply:
    """The text and token counts of a chat-completion body.

    Raises:
        BadResponse: The body is not JSON, or not shaped like a chat completion.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # deep nesting: Recursion
        raise BadResponse(f"reply body is not JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise BadResponse(f"reply body is a JSON {type(data).__name__}, not an object")
    choices = data.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    message = first.get("message") if isinstance(first, dict) else None
    if not isinstance(message, dict):  # an error object, {} or a stub: no answer at all
        raise BadResponse("reply has no choices[0].message")
    content = message.get("content")
    if not isinstance(content, str | None):  # None or "": cut off at the length limit
        raise BadResponse("reply's message content is not text")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return Reply(
        text=content or "",
        prompt_tokens=usage.get("prompt_tokens", 0),
        completion_tokens=usage.get("completion_tokens", 0),
    )


def import_litellm() -> ModuleType:
    """Import litellm with the local cost map and without its debug banners."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    return litellm


def _import_openai() -> ModuleType:
    import openai

    return openai


@functools.cache
def read_cost_map() -> dict[str, Any]:
    """The offline cost map of litellm ({} when litellm or its file is missing)."""
    spec = importlib.util.find_spec("litellm")  # a top-level name: nothing is imported
    folders = spec.submodule_search_locations if spec is not None else None
    for folder in folders or ():
        path = Path(folder) / COST_MAP_FILE
        if path.is_file():
            data = json.loads(path.read_text())
            return data if isinstance(data, dict) else {}
    return {}
