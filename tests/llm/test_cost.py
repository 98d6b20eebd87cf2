"""Prices, local models, in-flight estimates (pure functions over litellm's offline map)."""

from __future__ import annotations

import pytest

from cambrian.llm import Prices, estimate_cost, estimate_prompt_tokens, is_local, resolve_prices

COST_MAP = {
    "gpt-4o-mini": {"input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7},
    "openrouter/x/y": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
}


@pytest.mark.parametrize(
    ("api_base", "launch", "local"),
    [
        ("http://127.0.0.1:8000/v1", None, True),
        ("http://localhost:8000/v1", None, True),
        ("http://[::1]:8000/v1", None, True),
        ("127.0.0.2:9000", None, True),
        ("https://api.openai.com/v1", None, False),
        ("http://10.0.0.5:8000/v1", None, False),
        (None, None, False),
        (None, "vllm", True),
        ("https://gpu-box.example/v1", "llamacpp", True),
    ],
)
def test_is_local(api_base, launch, local):
    assert is_local(api_base, launch) is local


def test_prices_come_from_the_map_under_the_full_or_bare_name():
    assert resolve_prices(COST_MAP, "openai/gpt-4o-mini") == Prices(1.5e-7, 6e-7)
    assert resolve_prices(COST_MAP, "openrouter/x/y") == Prices(1e-6, 2e-6)
    assert resolve_prices(COST_MAP, "openai/unknown-model") == Prices(0.0, 0.0)


def test_local_models_are_free_and_overrides_win():
    assert resolve_prices(COST_MAP, "openai/gpt-4o-mini", local=True) == Prices(0.0, 0.0)
    overridden = resolve_prices(COST_MAP, "openai/gpt-4o-mini", price_out=3.0)
    assert (overridden.prompt, overridden.completion) == (1.5e-7, pytest.approx(3e-6))
    local_priced = resolve_prices(
        COST_MAP, "hosted_vllm/m", price_in=0.1, price_out=0.2, local=True
    )
    assert (local_priced.prompt, local_priced.completion) == pytest.approx((1e-7, 2e-7))
    assert local_priced.cost(1_000_000, 500_000) == pytest.approx(0.2)


def test_in_flight_estimate_assumes_the_whole_completion_cap():
    messages = [{"role": "system", "content": "x" * 400}, {"role": "user", "content": "y" * 4000}]
    assert estimate_prompt_tokens(messages) == 1100 + 8
    assert estimate_cost(messages, Prices(1e-6, 2e-6), max_tokens=1000) == pytest.approx(
        1108e-6 + 2000e-6
    )
    assert estimate_cost(messages, Prices(), max_tokens=1000) == 0.0
