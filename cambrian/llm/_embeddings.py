"""Text embeddings through litellm (any provider, or an OpenAI-compatible ``/v1/embeddings``)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from cambrian.errors import LLMError
from cambrian.llm._client import _one_line
from cambrian.llm._transport import import_litellm


async def embed_texts(
    texts: Sequence[str],
    *,
    model: str,
    api_base: str | None = None,
    api_key_env: str | None = None,
    timeout_s: float,
) -> list[list[float]]:
    """Embed ``texts`` in one request.

    Args:
        texts: The texts, in order.
        model: litellm embedding model name (``openai/text-embedding-3-small``, or
            ``openai/<name>`` with ``api_base`` for a local OpenAI-compatible server).
        api_base: Endpoint URL; None for the provider's own.
        api_key_env: Environment variable holding the key; None: the provider's usual one
            (a dummy key is sent to an ``api_base`` that has none).
        timeout_s: Hard deadline of the request.

    Returns:
        One vector per text, in order.

    Raises:
        LLMError: When the endpoint fails, times out or answers the wrong number of vectors.
    """
    if not texts:
        return []
    litellm = await asyncio.to_thread(import_litellm)
    import openai  # loaded by litellm already; the base of every error it raises

    kwargs: dict[str, object] = {"model": model, "input": list(texts), "timeout": timeout_s}
    if api_base:
        kwargs["api_base"] = api_base
    key = os.environ.get(api_key_env, "").strip() if api_key_env else ""
    if api_key_env and not key:
        raise LLMError(f"novelty.embedding_api_key_env names {api_key_env}, but it is not set")
    if key or api_base:
        kwargs["api_key"] = key or "sk-none"
    try:
        response = await asyncio.wait_for(litellm.aembedding(**kwargs), timeout=timeout_s)
    except (openai.OpenAIError, TimeoutError) as exc:
        raise LLMError(
            f"embedding call failed for model {model} at {api_base or 'the provider default'}: "
            f"{_one_line(exc)}; check novelty.embedding_model and novelty.embedding_api_base"
        ) from exc
    vectors = [_vector(item) for item in response.data]
    if len(vectors) != len(texts):
        raise LLMError(f"embedding model {model} returned {len(vectors)} vectors for {len(texts)}")
    return vectors


def _vector(item: object) -> list[float]:
    """The embedding of one response item (a dict or an object with ``embedding``)."""
    embedding = item["embedding"] if isinstance(item, dict) else item.embedding
    return [float(x) for x in embedding]
