"""ChatClient against a real OpenAI-compatible HTTP server on loopback (no mocks)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import pytest

from cambrian.config import LLMConfig
from cambrian.errors import LLMError
from cambrian.llm import (
    ChatClient,
    Fault,
    ScriptedLLMServer,
    default_model_from_env,
    get_llm,
    mutate_numbers,
    replay,
)
from cambrian.llm._transport import is_direct

MESSAGES = [
    {"role": "system", "content": "You edit code."},
    {"role": "user", "content": "make it faster please"},
]


def _complete(server: ScriptedLLMServer, model: str = "openai/scripted", **config):
    settings = {"retries": 3, "timeout_s": 10.0} | config
    client = ChatClient(LLMConfig(model=model, api_base=server.url, **settings), backoff_s=0.01)
    return asyncio.run(client.complete(MESSAGES))


def test_success_reports_text_usage_and_latency():
    with ScriptedLLMServer(replay(["here is my answer"])) as server:
        completion = _complete(server)
        assert server.requests == 1
    assert completion.text == "here is my answer"
    assert completion.model == "openai/scripted"
    assert completion.prompt_tokens == 7
    assert completion.completion_tokens == 4
    assert completion.latency_s > 0
    assert completion.cost_usd == 0.0  # unknown pricing never raises


def test_known_model_is_priced_from_the_local_cost_map():
    with ScriptedLLMServer(replay(["one two three"])) as server:
        completion = _complete(server, model="openai/gpt-4o-mini")
    assert completion.cost_usd > 0


def test_server_errors_are_retried_until_success():
    with ScriptedLLMServer(replay([Fault(500), Fault(503), "finally"])) as server:
        completion = _complete(server)
        assert server.requests == 3
    assert completion.text == "finally"


def test_rate_limit_honours_retry_after():
    with ScriptedLLMServer(replay([Fault(429, "slow down", retry_after=0.4), "ok"])) as server:
        start = time.perf_counter()
        completion = _complete(server)
        elapsed = time.perf_counter() - start
        assert server.requests == 2
    assert completion.text == "ok"
    assert elapsed >= 0.4  # backoff_s is 0.01, so only Retry-After explains the wait


def test_hang_past_the_deadline_fails_quickly():
    with ScriptedLLMServer(replay([Fault(200, "too late", delay_s=8)])) as server:
        start = time.perf_counter()
        with pytest.raises(LLMError, match="timed out"):
            _complete(server, timeout_s=1, retries=0)
        assert time.perf_counter() - start < 7  # cut at 1 s, not after the reply's 8 s


def test_a_timeout_is_retried_once_at_most():
    with ScriptedLLMServer(replay([Fault(200, "too late", delay_s=8)])) as server:
        with pytest.raises(LLMError, match="after 2 attempt"):
            _complete(server, timeout_s=1, retries=4)
        assert server.requests == 2


def test_dropped_connection_is_retried():
    with ScriptedLLMServer(replay([Fault(drop=True), "after the drop"])) as server:
        completion = _complete(server)
        assert server.requests == 2
    assert completion.text == "after the drop"


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_fail_at_once_without_retries(status):
    with ScriptedLLMServer(replay([Fault(status, "nope")])) as server:
        with pytest.raises(LLMError) as caught:
            _complete(server, retries=4)
        assert server.requests == 1
        url = server.url
    message = str(caught.value)
    assert "\n" not in message
    assert f"({status})" in message and "openai/scripted" in message and url in message


def test_exhausted_retries_raise_one_line_error():
    with ScriptedLLMServer(replay([Fault(500, "boom")])) as server:
        with pytest.raises(LLMError, match="after 3 attempt") as caught:
            _complete(server, retries=2)
        assert server.requests == 3
    assert "\n" not in str(caught.value)


def test_unreachable_port_raises_llm_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but never listening: connection refused
        config = LLMConfig(model="openai/x", api_base=f"http://127.0.0.1:{port}/v1", retries=1)
        client = ChatClient(config, backoff_s=0.01)
        with pytest.raises(LLMError, match=f"127.0.0.1:{port}"):
            asyncio.run(client.complete(MESSAGES))


def test_missing_api_key_env_is_reported(monkeypatch):
    monkeypatch.delenv("CAMBRIAN_TEST_NO_SUCH_KEY", raising=False)
    with ScriptedLLMServer(replay(["x"])) as server:
        with pytest.raises(LLMError, match="CAMBRIAN_TEST_NO_SUCH_KEY"):
            _complete(server, api_key_env="CAMBRIAN_TEST_NO_SUCH_KEY")
        assert server.requests == 0


def test_concurrent_calls_share_one_client():
    async def run_many(client):
        return await asyncio.gather(*(client.complete(MESSAGES) for _ in range(20)))

    with ScriptedLLMServer(replay(["a", "b"])) as server:
        client = get_llm(LLMConfig(model="openai/scripted", api_base=server.url))
        completions = asyncio.run(run_many(client))
        assert server.requests == 20
    assert sorted({c.text for c in completions}) == ["a", "b"]


def test_unresolved_model_is_misuse():
    with pytest.raises(ValueError, match="model"):
        ChatClient(LLMConfig())
    assert get_llm(LLMConfig(model="openai/gpt-4o-mini")).name == "openai/gpt-4o-mini"


def test_default_model_from_env():
    assert default_model_from_env({}) is None
    assert default_model_from_env({"OPENAI_API_KEY": ""}) is None
    assert default_model_from_env({"OPENAI_API_KEY": "sk-1"}) == "openai/gpt-4o-mini"
    assert default_model_from_env({"ANTHROPIC_API_KEY": "k"}).startswith("anthropic/")
    assert default_model_from_env({"GEMINI_API_KEY": "k"}).startswith("gemini/")
    both = {"ANTHROPIC_API_KEY": "k", "OPENAI_API_KEY": "k"}
    assert default_model_from_env(both) == "openai/gpt-4o-mini"


def test_a_run_against_an_openai_compatible_server_never_imports_litellm(scaffold_task, tmp_path):
    """The openai client serves such endpoints: litellm's seconds of import are not paid."""
    script = (
        "import sys\n"
        "from cambrian.cli import main\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    print('litellm loaded:', 'litellm' in sys.modules)\n"
    )
    with ScriptedLLMServer(mutate_numbers(0)) as server:
        args = [str(scaffold_task), "--run-dir", str(tmp_path / "run"), "--iterations", "2"]
        args += ["--model", "openai/scripted", "--api-base", server.url, "--sandbox", "process"]
        run = subprocess.run(
            [sys.executable, "-c", script, "run", *args],
            capture_output=True,
            text=True,
            timeout=300,
        )
        requests = server.requests
    assert "litellm loaded: False" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]
    assert "stopped: iterations" in run.stdout and requests >= 2


def test_one_client_serves_one_event_loop_after_another():
    """Each asyncio.run gets its own connections; the old loop's are never closed in the new."""
    script = (
        "import asyncio, gc, sys\n"
        "from cambrian.config import LLMConfig\n"
        "from cambrian.llm import ChatClient\n"
        "client = ChatClient(LLMConfig(model='openai/scripted', api_base=sys.argv[1]))\n"
        "async def ask():\n"
        "    text = (await client.complete([{'role': 'user', 'content': 'hi'}])).text\n"
        "    gc.collect()\n"
        "    await asyncio.sleep(0.1)\n"
        "    return text\n"
        "print([asyncio.run(ask()) for _ in range(3)])\n"
        "async def drop():\n"  # a client of a finished loop, collected inside a later one
        "    global client\n"
        "    client = None\n"
        "    gc.collect()\n"
        "    await asyncio.sleep(0.1)\n"
        "asyncio.run(drop())\n"
    )
    with ScriptedLLMServer(replay(["a", "b", "c"])) as server:
        run = subprocess.run(
            [sys.executable, "-c", script, server.url], capture_output=True, text=True, timeout=120
        )
    assert run.returncode == 0 and "['a', 'b', 'c']" in run.stdout, run.stderr[-2000:]
    assert "Event loop is closed" not in run.stderr and "never retrieved" not in run.stderr


@pytest.mark.parametrize(
    "body",
    ["[" * 100_000, '{"error": {"message": "overloaded"}}', "{}", '{"choices": {}}'],
    ids=["deeply nested", "error object", "empty object", "choices not a list"],
)
def test_a_reply_that_is_no_chat_completion_is_a_bad_response_retried(body):
    with ScriptedLLMServer(replay([Fault(status=200, raw=body), "answer"])) as server:
        client = ChatClient(LLMConfig(model="openai/scripted", api_base=server.url), backoff_s=0)
        completion = asyncio.run(client.complete(MESSAGES))
    assert completion.text == "answer" and client.error_counts == {"bad_response": 1}


def test_models_litellm_knows_keep_its_parameter_mapping_behind_an_api_base():
    assert is_direct("openai/qwen2.5-coder-1.5b-instruct", "http://127.0.0.1:8000/v1")
    assert not is_direct("openai/o3-mini", "https://proxy.example/v1")  # max_completion_tokens
    assert not is_direct("openai/gpt-4o-mini", None) and not is_direct("hosted_vllm/x", "http://h")


@pytest.mark.parametrize(
    "url", ["http://[::1:1/v1", "localhost:8000/v1", "ftp://h/v1", "http://h:99999"]
)
def test_an_api_base_that_is_no_http_url_is_refused_in_one_line(url):
    with pytest.raises(ValueError, match="llm.api_base must be an http"):
        LLMConfig(model="openai/x", api_base=url)


def test_closing_a_client_after_each_event_loop_keeps_no_connections():
    script = (
        "import asyncio, os, sys\n"
        "from cambrian.config import LLMConfig\n"
        "from cambrian.llm import ChatClient\n"
        "client = ChatClient(LLMConfig(model='openai/scripted', api_base=sys.argv[1]))\n"
        "async def ask():\n"
        "    await client.complete([{'role': 'user', 'content': 'hi'}])\n"
        "    await client.aclose()\n"
        "counts = []\n"
        "for _ in range(20):\n"
        "    asyncio.run(ask())\n"
        "    counts.append(len(os.listdir('/proc/self/fd')))\n"
        "print(counts[1], counts[-1])\n"
    )
    with ScriptedLLMServer(mutate_numbers(0)) as server:
        run = subprocess.run(
            [sys.executable, "-c", script, server.url], capture_output=True, text=True, timeout=120
        )
    assert run.returncode == 0, run.stderr[-2000:]
    early, late = map(int, run.stdout.split())
    assert late <= early  # twenty loops, no socket left behind
