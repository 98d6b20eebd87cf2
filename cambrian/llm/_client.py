"""The chat client: hard deadline, retries with backoff, token and cost accounting.

Requests go through the openai client to OpenAI-compatible endpoints and through litellm
to every other provider (``cambrian.llm._transport``). Neither is imported before the
first call: litellm takes seconds to load. Prices come from litellm's offline cost map,
so nothing is fetched from the network.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from cambrian.config import LLMConfig
from cambrian.errors import LLMError
from cambrian.llm._cost import Prices, resolve_prices
from cambrian.llm._transport import BadResponse, Reply, get_transport
from cambrian.types import LLM, Completion

#: Most tokens one call is counted for: a reply's usage numbers are the server's claim.
MAX_TOKENS = 10**9
_BACKOFF_CAP_S = 20.0
_RETRY_AFTER_CAP_S = 60.0
_RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
# A call that missed its deadline twice is hung: a third try would only cost another one.
_TIMEOUT_TRIES = 2
# Checked in order; the first key present in the environment picks the default model.
_PROVIDER_DEFAULTS = (
    ("OPENAI_API_KEY", "openai/gpt-4o-mini"),
    ("ANTHROPIC_API_KEY", "anthropic/claude-haiku-4-5"),
    ("GEMINI_API_KEY", "gemini/gemini-2.5-flash"),
    ("DEEPSEEK_API_KEY", "deepseek/deepseek-chat"),
    ("MISTRAL_API_KEY", "mistral/mistral-small-latest"),
    ("OPENROUTER_API_KEY", "openrouter/openai/gpt-4o-mini"),
)
_FIXES = {
    401: "check the API key {key}",
    403: "the API key {key} may not use this model",
    404: "check llm.model (a litellm name such as openai/gpt-4o-mini) and llm.api_base",
    400: "the endpoint rejected the request; check llm.model, llm.max_tokens and llm.api_base",
}


def default_model_from_env(environ: Mapping[str, str]) -> str | None:
    """A provider's default model when its API key is in ``environ``.

    Args:
        environ: Environment variables, usually ``os.environ``.

    Returns:
        A litellm model name (``OPENAI_API_KEY`` -> ``openai/gpt-4o-mini``,
        ``ANTHROPIC_API_KEY`` -> ``anthropic/claude-haiku-4-5``, ``GEMINI_API_KEY`` ->
        ``gemini/gemini-2.5-flash``, ...), or None when no known key is set.
    """
    for key, model in _PROVIDER_DEFAULTS:
        if environ.get(key, "").strip():
            return model
    return None


def get_llm(config: LLMConfig, *, seed: int | None = None) -> LLM:
    """Build the client for ``config`` (whose ``model`` must already be resolved).

    Args:
        config: The ``[llm]`` section.
        seed: Seed of the ensemble's selection policy (used when ``models`` is set).

    Returns:
        An ``EnsembleLLM`` when ``config.models`` is set, else a ``ChatClient``.

    Raises:
        ValueError: If ``config.model`` is None and ``config.models`` is empty.
    """
    if config.models:
        from cambrian.llm._ensemble import EnsembleLLM  # it imports this module

        return EnsembleLLM(config, seed=seed)
    return ChatClient(config)


class ChatClient:
    """A chat model: an OpenAI-compatible server (openai client) or any litellm provider.

    Every attempt runs under a hard deadline of ``config.timeout_s``. Rate limits (429),
    server errors (5xx) and connection errors are retried up to ``config.retries`` times
    with exponential backoff and jitter, honouring ``Retry-After``; a timeout is retried
    once at most. Authentication, not-found and bad-request errors fail at once.

    A ``[lo, hi]`` temperature is sampled anew for every call, and no ``seed`` is sent,
    so identical prompts get different samples.

    Args:
        config: The ``[llm]`` section; ``model`` must be set.
        backoff_s: Base of the exponential backoff (tests make it small).
        local: The model runs on this machine: it costs 0 unless ``config.price_in`` or
            ``config.price_out`` says otherwise.

    Raises:
        ValueError: If ``config.model`` is None or ``backoff_s`` is negative.
    """

    def __init__(self, config: LLMConfig, *, backoff_s: float = 0.5, local: bool = False) -> None:
        if config.model is None:
            raise ValueError("config.model is None: resolve the model before building a client")
        if backoff_s < 0:
            raise ValueError(f"backoff_s must be >= 0, got {backoff_s}")
        self.name: str = config.model
        self._config = config
        self._backoff_s = backoff_s
        self._rng = random.Random()
        self._local = local
        self._transport = get_transport(config.model, config.api_base)
        self.error_counts: Counter[str] = Counter()  # failed attempts by class

    async def complete(
        self, messages: Sequence[Mapping[str, str]], *, model: str | None = None
    ) -> Completion:
        """Return the model's reply to ``messages``.

        Args:
            messages: OpenAI chat messages (``role`` and ``content``).
            model: Ignored: a client has one model (the ensemble uses it for follow-ups).

        Returns:
            The reply with token counts, cost (0.0 when pricing is unknown) and latency.

        Raises:
            LLMError: On a non-retryable error, or when retries are exhausted.
        """
        await self._transport.load()
        import openai  # loaded by the transport; the base of every error either raises

        kwargs = self._request(messages)
        start = time.perf_counter()
        timeouts = 0
        for attempt in range(self._config.retries + 1):
            try:
                reply = await asyncio.wait_for(
                    self._transport.send(kwargs), timeout=self._config.timeout_s
                )
            except (openai.OpenAIError, TimeoutError, BadResponse) as exc:
                status = _status(exc)
                kind = error_class(exc, status)
                self.error_counts[kind] += 1
                if not _retryable(exc, status):
                    raise LLMError(self._fatal_message(exc, status)) from exc
                timeouts += kind == "timeout"
                if attempt == self._config.retries or timeouts == _TIMEOUT_TRIES:
                    raise LLMError(self._exhausted_message(exc, status, attempt + 1)) from exc
                await asyncio.sleep(self._delay(attempt, exc))
                continue
            return self._completion(reply, time.perf_counter() - start)
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        """Close the connections this client holds for the running event loop."""
        await self._transport.aclose()

    def errors_by_model(self) -> dict[str, dict[str, int]]:
        """Failed attempts (retried or final) by class, under this model's name."""
        return {self.name: dict(self.error_counts)} if self.error_counts else {}

    async def prices(self) -> Prices:
        """The model's per-token prices (overrides, else 0 when local, else litellm's map)."""
        await self._transport.load()
        return self._prices()

    def _prices(self) -> Prices:
        """Prices from the loaded cost map and the config's overrides."""
        config = self._config
        return resolve_prices(
            self._transport.cost_map(),
            self.name,
            price_in=config.price_in,
            price_out=config.price_out,
            local=self._local,
        )

    def _request(self, messages: Sequence[Mapping[str, str]]) -> dict[str, Any]:
        """The request of one call, as the transport takes it."""
        config = self._config
        kwargs: dict[str, Any] = {
            "model": self.name,
            "messages": [dict(message) for message in messages],
            "temperature": sample_temperature(config.temperature, self._rng),
            "max_tokens": config.max_tokens,
            "timeout": config.timeout_s,
        }
        if config.api_base:
            kwargs["api_base"] = config.api_base
        api_key = self._api_key()
        if api_key:
            kwargs["api_key"] = api_key
        return kwargs

    def _api_key(self) -> str | None:
        """The explicit key, a dummy for keyless OpenAI-compatible servers, or None."""
        env_name = self._config.api_key_env
        if env_name:
            value = os.environ.get(env_name, "").strip()
            if not value:
                raise LLMError(
                    f"llm.api_key_env names {env_name}, but it is not set: "
                    f"export {env_name}=... or unset llm.api_key_env"
                )
            return value
        provider = self.name.split("/", 1)[0].upper().replace("-", "_")
        if self._config.api_base and not os.environ.get(f"{provider}_API_KEY"):
            return "sk-none"
        return None

    def _delay(self, attempt: int, exc: BaseException) -> float:
        """Seconds to wait before retry ``attempt + 1``: Retry-After, else backoff + jitter."""
        retry_after = _retry_after(exc)
        if retry_after is not None:
            return min(retry_after, _RETRY_AFTER_CAP_S)
        ceiling = min(_BACKOFF_CAP_S, self._backoff_s * 2**attempt)
        return ceiling * (0.5 + 0.5 * self._rng.random())

    def _where(self) -> str:
        """The model and endpoint, for error messages."""
        return f"model {self.name} at {self._config.api_base or 'the provider default endpoint'}"

    def _fatal_message(self, exc: BaseException, status: int | None) -> str:
        """One line for a non-retryable error, with how to fix it."""
        provider = self.name.split("/", 1)[0].upper()
        env = self._config.api_key_env
        key = f"in ${env}" if env else f"(${provider}_API_KEY, or name it in llm.api_key_env)"
        fix = _FIXES.get(status or 0, "check llm.model and llm.api_base").format(key=key)
        code = f" ({status})" if status else ""
        return f"LLM call failed{code} for {self._where()}: {_one_line(exc)}; {fix}"

    def _exhausted_message(self, exc: BaseException, status: int | None, attempts: int) -> str:
        """One line for an error that outlived its retries."""
        if isinstance(exc, TimeoutError):
            what = "timed out"
        elif _connection_error(exc):
            what = "could not connect"
        else:
            what = f"failed ({status or 'no status'})"
        return (
            f"LLM call {what} for {self._where()} after {attempts} attempt(s): "
            f"{_one_line(exc)}; check that the endpoint is up, or raise llm.timeout_s/llm.retries"
        )

    def _completion(self, reply: Reply, latency_s: float) -> Completion:
        """Turn a transport's reply into a ``Completion``."""
        prompt_tokens = _token_count(reply.prompt_tokens)
        completion_tokens = _token_count(reply.completion_tokens)
        return Completion(
            text=reply.text,
            model=self.name,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=self._prices().cost(prompt_tokens, completion_tokens),
            latency_s=latency_s,
        )


def _token_count(value: Any) -> int:
    """A usage number as a token count in ``[0, MAX_TOKENS]`` (0 when it is no number)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return 0  # value != value: NaN
    return int(min(max(value, 0), MAX_TOKENS))


def sample_temperature(spec: float | Sequence[float], rng: random.Random) -> float:
    """A temperature for one call: ``spec`` itself, or uniform over a ``(lo, hi)`` range.

    Args:
        spec: A number, or a ``(lo, hi)`` pair.
        rng: The caller's RNG.
    """
    if isinstance(spec, int | float):
        return float(spec)
    low, high = spec
    return float(low) if low == high else rng.uniform(low, high)


def _status(exc: BaseException) -> int | None:
    """The HTTP status an error carries, if any."""
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def error_class(exc: BaseException, status: int | None) -> str:
    """One word for a failed attempt: timeout, connection, rate_limit, server, auth, ..."""
    import openai  # already loaded by the transport

    if isinstance(exc, TimeoutError | openai.APITimeoutError) or "Timeout" in type(exc).__name__:
        return "timeout"
    if _connection_error(exc):
        return "connection"
    if isinstance(exc, BadResponse) or _unparsable(exc):  # litellm says 500 for a broken 200
        return "bad_response"
    classes = {429: "rate_limit", 401: "auth", 403: "auth", 404: "not_found", 400: "bad_request"}
    if status in classes:
        return classes[status]
    if status is not None and status >= 500:
        return "server"
    return "bad_response"


_JSON_ERRORS = re.compile(
    r"Expecting value|Unterminated string|Expecting '.' delimiter|Extra data|JSONDecodeError"
)


def _unparsable(exc: BaseException) -> bool:
    """Whether the reply arrived but its body was not valid JSON."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, json.JSONDecodeError) or _JSON_ERRORS.search(str(seen)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _connection_error(exc: BaseException) -> bool:
    """Whether the endpoint could not be reached at all (litellm reports these as 500)."""
    import openai  # already loaded by the transport

    cause = exc.__cause__ or exc.__context__
    return (
        isinstance(exc, openai.APIConnectionError)
        or "Connection error" in str(exc)
        or "Server disconnected" in str(exc)  # litellm's hosted_vllm says 500 for a drop
        or (cause is not None and isinstance(cause, openai.APIConnectionError | ConnectionError))
    )


def _retryable(exc: BaseException, status: int | None) -> bool:
    """Whether retrying may help: 429/5xx, broken bodies, connection errors and timeouts."""
    import openai  # already loaded by the transport

    # APIConnectionError covers litellm's Timeout and openai's APITimeoutError.
    if isinstance(exc, TimeoutError | openai.APIConnectionError | BadResponse):
        return True
    if _unparsable(exc):  # a broken body, whatever status litellm's provider gave it
        return True
    return status is not None and (status in _RETRYABLE_STATUS or status >= 500)


def _retry_after(exc: BaseException) -> float | None:
    """Seconds from the error's ``Retry-After`` header, if it carries one."""
    headers: Any = getattr(exc, "litellm_response_headers", None) or getattr(exc, "headers", None)
    response = getattr(exc, "response", None)
    if not headers and response is not None:
        headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return None


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """The error's message on one line, shortened."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
