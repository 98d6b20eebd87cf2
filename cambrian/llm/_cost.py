"""Prices, call costs, in-flight cost estimates and the budget check (pure functions).

Prices are in USD per token. They come from litellm's offline cost map unless a model
entry overrides them (``price_in``/``price_out``, in USD per million tokens); a model
served on loopback, or one cambrian launches itself, costs nothing unless overridden.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

# Prompt-size estimate before tokenising: about four characters per token in English and
# code (OpenAI's rule of thumb), plus a few tokens of chat framing per message.
_CHARS_PER_TOKEN = 4.0
_TOKENS_PER_MESSAGE = 4


@dataclass(frozen=True)
class Prices:
    """A model's prices in USD per token.

    Attributes:
        prompt: Price of one prompt (input) token.
        completion: Price of one completion (output) token.
    """

    prompt: float = 0.0
    completion: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Dollar cost of a call with these token counts."""
        return prompt_tokens * self.prompt + completion_tokens * self.completion


def is_local(api_base: str | None, launch: str | None = None) -> bool:
    """Whether a model runs on this machine: launched by cambrian or served on loopback.

    Args:
        api_base: The model's endpoint URL (None: the provider's own endpoint).
        launch: The entry's ``launch`` engine, if cambrian starts the server.
    """
    if launch:
        return True
    if not api_base:
        return False
    host = urlparse(api_base if "//" in api_base else f"//{api_base}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_prices(
    cost_map: Mapping[str, Any],
    model: str,
    *,
    price_in: float | None = None,
    price_out: float | None = None,
    local: bool = False,
) -> Prices:
    """A model's per-token prices: overrides, else 0 when local, else litellm's cost map.

    Args:
        cost_map: ``litellm.model_cost`` (the offline map).
        model: litellm model name; its bare name (after the provider prefix) is tried too.
        price_in: Override, USD per million prompt tokens.
        price_out: Override, USD per million completion tokens.
        local: The model is served locally (free unless overridden).

    Returns:
        The prices; 0.0 for anything the map does not know.
    """
    mapped = Prices() if local else _mapped_prices(cost_map, model)
    return Prices(
        prompt=mapped.prompt if price_in is None else price_in / 1e6,
        completion=mapped.completion if price_out is None else price_out / 1e6,
    )


def _mapped_prices(cost_map: Mapping[str, Any], model: str) -> Prices:
    """Prices from litellm's map, trying the full and the bare model name."""
    bare = model.split("/", 1)[1] if "/" in model else model
    entry = cost_map.get(model) or cost_map.get(bare)
    if not isinstance(entry, Mapping):
        return Prices()
    return Prices(
        prompt=float(entry.get("input_cost_per_token") or 0.0),
        completion=float(entry.get("output_cost_per_token") or 0.0),
    )


def estimate_prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """Rough prompt size in tokens, without a tokenizer (about 4 characters per token)."""
    chars = sum(len(str(message.get("content") or "")) for message in messages)
    return math.ceil(chars / _CHARS_PER_TOKEN) + _TOKENS_PER_MESSAGE * len(messages)


def estimate_cost(messages: Sequence[Mapping[str, Any]], prices: Prices, max_tokens: int) -> float:
    """Upper estimate of a call's cost before it is made: the prompt plus ``max_tokens`` out.

    Args:
        messages: The chat messages to be sent.
        prices: The model's prices.
        max_tokens: The call's completion cap (the worst case is assumed).
    """
    return prices.cost(estimate_prompt_tokens(messages), max_tokens)
