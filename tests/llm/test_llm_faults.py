"""Every injected fault is survived: the client retries what can succeed and fails fast else."""

from __future__ import annotations

import asyncio
import time

import pytest

from cambrian.config import LLMConfig
from cambrian.errors import LLMError
from cambrian.llm import ChatClient, Fault, ScriptedLLMServer, replay

OK = "solve.py\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n"
MESSAGES = [{"role": "user", "content": "improve"}]


#: The openai client (an OpenAI-compatible endpoint) and litellm (another provider name).
MODELS = ["openai/scripted", "hosted_vllm/scripted"]


def _complete(server: ScriptedLLMServer, model: str, *, timeout_s: float = 5, retries: int = 3):
    config = LLMConfig(model=model, api_base=server.url, timeout_s=timeout_s, retries=retries)
    client = ChatClient(config, backoff_s=0.05)
    return asyncio.run(client.complete(MESSAGES))


FAULTS = {
    "429 with Retry-After": Fault(status=429, body="slow down", retry_after=1),
    "500": Fault(status=500),
    "503": Fault(status=503, body="overloaded"),
    "connection drop": Fault(drop=True),
    "hang": Fault(status=200, body=OK, delay_s=30),
    "slow trickle": Fault(status=200, raw='{"choices": []}' * 20, trickle_s=0.2),
    "garbage": Fault(status=200, raw="<html>bad gateway</html>"),
    "truncated JSON": Fault(status=200, raw='{"id": "x", "choices": [{"message": {"conte'),
}


CLASSES = {
    "429 with Retry-After": "rate_limit",
    "500": "server",
    "503": "server",
    "connection drop": "connection",
    "hang": "timeout",
    "slow trickle": "timeout",
    "garbage": "bad_response",
    "truncated JSON": "bad_response",
}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_then_success_is_survived(name: str, model: str) -> None:
    with ScriptedLLMServer(replay([FAULTS[name], OK])) as server:
        start = time.monotonic()
        client = ChatClient(
            LLMConfig(model=model, api_base=server.url, timeout_s=2, retries=3), backoff_s=0.05
        )
        completion = asyncio.run(client.complete(MESSAGES))
        assert client.error_counts == {CLASSES[name]: 1}  # classified and counted
        elapsed = time.monotonic() - start
        assert completion.text == OK
        assert server.requests == 2  # exactly one retry
    if name == "429 with Retry-After":
        assert elapsed >= 1.0  # the server's Retry-After was honoured
    assert elapsed < 15  # hangs and trickles are cut at the per-call deadline


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("name", list(FAULTS))
def test_persistent_fault_is_one_clear_error(name: str, model: str) -> None:
    with ScriptedLLMServer(replay([FAULTS[name]])) as server:
        start = time.monotonic()
        with pytest.raises(LLMError) as info:
            _complete(server, model, timeout_s=1, retries=1)
        assert time.monotonic() - start < 20
        assert server.requests == 2  # the first try and one retry, no more
        message = str(info.value)
        assert "\n" not in message and model in message and server.url in message
