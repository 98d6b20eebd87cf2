"""ScriptedLLMServer over real HTTP, its responders, and its module entry point."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from cambrian.llm import Fault, ScriptedLLMServer, mutate_numbers, replay

SOLVE = """import math

SCALE = 3  # outside the evolve block

# EVOLVE-BLOCK-START
def solve(n):
    radius = 0.25
    steps = 12
    name = "x1"
    return [radius * math.cos(i / steps) for i in range(n)]
# EVOLVE-BLOCK-END
"""


def _prompt(content: str, path: str = "solve.py") -> list[dict]:
    text = f"Improve this.\n\n### File: {path}\n```python\n{content}```\n\nAnswer with edits."
    return [{"role": "system", "content": "You edit code."}, {"role": "user", "content": text}]


def _post(url: str, body: dict) -> tuple[int, bytes]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        f"{url}/chat/completions", data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _parse_edit(reply: str) -> tuple[str, str, str]:
    lines = reply.strip("\n").split("\n")
    assert lines[1] == "<<<<<<< SEARCH" and lines[3] == "=======" and lines[5] == ">>>>>>> REPLACE"
    return lines[0], lines[2], lines[4]


def test_mutate_numbers_edits_a_line_inside_the_evolve_block():
    respond = mutate_numbers(seed=3)
    region = SOLVE.split("EVOLVE-BLOCK-START\n")[1].split("# EVOLVE-BLOCK-END")[0]
    for _ in range(30):
        path, search, replace = _parse_edit(respond(_prompt(SOLVE)))
        assert path == "solve.py"
        assert search in region.splitlines()
        assert replace != search
        assert search.split("=")[0] == replace.split("=")[0]  # only the literal changes
        assert '"x1"' not in search  # digits inside identifiers/strings are not literals


def test_mutate_numbers_is_deterministic_per_seed():
    first = [mutate_numbers(seed=7)(_prompt(SOLVE)) for _ in range(1)]
    a, b = mutate_numbers(seed=7), mutate_numbers(seed=7)
    replies_a = [a(_prompt(SOLVE)) for _ in range(10)]
    assert replies_a == [b(_prompt(SOLVE)) for _ in range(10)]
    assert replies_a[0] == first[0]
    assert len(set(replies_a)) > 1  # the RNG advances on each call


def test_mutate_numbers_keeps_ints_int_and_floats_float():
    respond = mutate_numbers(seed=1)
    for _ in range(20):
        _, search, replace = _parse_edit(respond(_prompt("x = 10\ny = 2.5\n")))
        if search.startswith("x"):
            assert replace.split(" = ")[1].isdigit()
        else:
            float(replace.split(" = ")[1])
            assert "." in replace.split(" = ")[1] or "e" in replace


def test_mutate_numbers_without_numbers_answers_prose():
    reply = mutate_numbers()(_prompt("def f():\n    return 'abc'\n"))
    assert "SEARCH" not in reply and reply.strip()
    assert "SEARCH" not in mutate_numbers()([{"role": "user", "content": "hello"}])


def test_replay_answers_in_order_and_cycles_over_http():
    with ScriptedLLMServer(replay(["one", "two", "three"])) as server:
        texts = []
        for _ in range(4):
            status, body = _post(server.url, {"model": "m", "messages": _prompt("x")})
            assert status == 200
            texts.append(json.loads(body)["choices"][0]["message"]["content"])
        assert server.requests == 4
    assert texts == ["one", "two", "three", "one"]


def test_non_streaming_response_shape():
    with ScriptedLLMServer(replay(["alpha beta"])) as server:
        status, body = _post(server.url, {"model": "mine", "messages": _prompt("x")})
    reply = json.loads(body)
    assert status == 200
    assert reply["object"] == "chat.completion" and reply["model"] == "mine"
    assert reply["id"] and isinstance(reply["created"], int)
    assert reply["choices"][0]["finish_reason"] == "stop"
    usage = reply["usage"]
    assert usage["completion_tokens"] == 2
    assert usage["total_tokens"] == usage["prompt_tokens"] + 2


def test_streaming_sends_sse_chunks_ending_with_done():
    text = "a longer reply that is split over several stream chunks"
    with ScriptedLLMServer(replay([text])) as server:
        body = {"model": "m", "messages": _prompt("x"), "stream": True}
        body["stream_options"] = {"include_usage": True}
        status, raw = _post(server.url, body)
    events = [line[len("data: ") :] for line in raw.decode().split("\n\n") if line]
    assert status == 200
    assert events[-1] == "data: [DONE]"[len("data: ") :]
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert content == text
    assert len(chunks) > 3
    assert chunks[-1]["usage"]["completion_tokens"] == len(text.split())


def test_models_health_and_unknown_routes():
    with ScriptedLLMServer(replay(["x"])) as server:
        with urllib.request.urlopen(f"{server.url}/models", timeout=5) as response:
            assert json.loads(response.read())["data"][0]["id"]
        root = server.url.removesuffix("/v1")
        with urllib.request.urlopen(f"{root}/health", timeout=5) as response:
            assert json.loads(response.read()) == {"status": "ok"}
        assert _post(f"{root}/nowhere", {"messages": []})[0] == 404
        assert _post(server.url, {"no": "messages"})[0] == 400


def test_faults_drop_delay_and_status():
    faults = [Fault(drop=True), Fault(200, "late", delay_s=0.3), Fault(503, "down")]
    with ScriptedLLMServer(replay(faults)) as server:
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            _post(server.url, {"messages": []})
        start = time.perf_counter()
        status, body = _post(server.url, {"messages": []})
        assert time.perf_counter() - start >= 0.3
        assert status == 200 and json.loads(body)["choices"][0]["message"]["content"] == "late"
        status, body = _post(server.url, {"messages": []})
        assert status == 503 and json.loads(body)["error"]["message"] == "down"
        assert server.requests == 3


def test_retry_after_header_is_sent():
    with ScriptedLLMServer(replay([Fault(429, "slow", retry_after=2.5)])) as server:
        request = urllib.request.Request(
            f"{server.url}/chat/completions",
            data=json.dumps({"messages": []}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 429
    assert caught.value.headers["Retry-After"] == "2.5"
    assert json.loads(caught.value.read())["error"]["message"] == "slow"


def test_concurrent_requests_are_all_counted():
    with ScriptedLLMServer(mutate_numbers(seed=0)) as server:
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(
                pool.map(lambda _: _post(server.url, {"messages": _prompt(SOLVE)}), range(64))
            )
        assert server.requests == 64
    assert all(status == 200 for status, _ in results)


def test_module_entry_point_serves_until_sigterm(tmp_path):
    reply_file = tmp_path / "reply.txt"
    reply_file.write_text("from a file")
    command = [sys.executable, "-m", "cambrian.llm._scripted", "--port", "0", "--mode", "replay"]
    process = subprocess.Popen(
        [*command, "--reply-file", str(reply_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        status, body = _post(url, {"messages": _prompt("x")})
        assert json.loads(body)["choices"][0]["message"]["content"] == "from a file"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
        assert "RuntimeWarning" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
