"""Hostile evaluator output and LLM replies are data, in real runs against a scripted server.

Each case fails its candidate (or rejects its edit) with a one-line reason, the run goes
on to its iterations, and a resumed run goes on too.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import cambrian_cmd, scrubbed_env

from cambrian.llm import Fault, ScriptedLLMServer, mutate_numbers

# The initial program scores 0.25; every candidate (a changed WIDTH or HEIGHT) answers
# with the result named by CASE, written to $CAMBRIAN_RESULT.
EVALUATOR = """
import json, os, pathlib, solve
CASE = {case!r}
RESULTS = {{
    "deep": lambda: '{{"score": 1, "metrics": {{"m": ' + "[" * 100000 + "]" * 100000 + "}}}}",
    "many_metrics": lambda: json.dumps(
        {{"score": 1, "metrics": {{f"m{{i}}": i for i in range(10**6)}}}}
    ),
    "huge_score": lambda: '{{"score": 1' + "0" * 400 + "}}",
    "wide_metrics": lambda: json.dumps(
        {{"score": 1, "metrics": {{f"m{{i}}": "v" * 5000 for i in range(150)}}}}
    ),
}}
text = json.dumps({{"score": 0.25}})
if (solve.WIDTH, solve.HEIGHT) != (0.5, 0.5) or CASE == "wide_metrics":
    text = RESULTS[CASE]()
pathlib.Path(os.environ["CAMBRIAN_RESULT"]).write_text(text)
"""

# The measured failures: RecursionError, 15.8 M character prompts, OverflowError (the
# other bounds are checked on parse_result alone).
REASONS = {
    "deep": "result JSON is nested deeper than 32 levels",
    "many_metrics": "result is larger than 1000000 characters",
    "huge_score": "score is too large for a float",
}


def _run(task: Path, run_dir: Path, url: str, iterations: int, *sets: str):
    cmd = cambrian_cmd(
        "run", str(task), "--run-dir", str(run_dir), "--iterations", str(iterations),
        "--model", "openai/scripted", "--api-base", url, "-q", "--sandbox", "process",
        "--set", "evaluator.result=auto",
        *[arg for s in sets for arg in ("--set", s)],
    )  # fmt: skip
    return subprocess.run(cmd, env=scrubbed_env(), capture_output=True, text=True, timeout=300)


def _rows(run_dir: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(run_dir / "archive.db")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _children(run_dir: Path) -> list[tuple[str, str]]:
    return _rows(
        run_dir,
        "select e.status, e.reason from evaluations e join programs p on p.id = e.program_id "
        "where p.parent_id is not null",
    )


def _run_and_resume(task: Path, run_dir: Path, url: str, *sets: str) -> None:
    """Two iterations, then a resume to three; both runs end normally."""
    for iterations in (2, 3):
        done = _run(task, run_dir, url, iterations, *sets)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "internal error" not in done.stderr + done.stdout


@pytest.mark.parametrize("case", sorted(REASONS))
def test_hostile_result_fails_its_candidate(scaffold_task: Path, tmp_path: Path, case: str):
    (scaffold_task / "evaluate.py").write_text(EVALUATOR.format(case=case))
    run_dir = tmp_path / "run"
    with ScriptedLLMServer(mutate_numbers(seed=3)) as server:
        _run_and_resume(scaffold_task, run_dir, server.url)
    assert _children(run_dir) == [("error", REASONS[case])] * 3


def test_prompt_shows_a_bounded_part_of_the_metrics(scaffold_task: Path, tmp_path: Path):
    # 150 metrics of 5,000 characters each: a valid result, but ~750 kB if all were shown.
    (scaffold_task / "evaluate.py").write_text(EVALUATOR.format(case="wide_metrics"))
    run_dir = tmp_path / "run"
    with ScriptedLLMServer(mutate_numbers(seed=3), record=True) as server:
        _run_and_resume(scaffold_task, run_dir, server.url)
        bodies = server.bodies
    assert all(status == "ok" for status, _ in _children(run_dir))
    sizes = [sum(len(m["content"]) for m in body["messages"]) for body in bodies]
    assert sizes and max(sizes) < 20_000, sizes


def _usage_responder():
    """Valid edits, each reply claiming absurd token counts: huge or negative, by turns."""
    mutate, claims = mutate_numbers(seed=5), itertools.cycle([(10**30, -7), (-1000, 10**30)])
    lock = threading.Lock()

    def respond(messages):
        with lock:
            prompt_tokens, completion_tokens = next(claims)
        choice = {"index": 0, "finish_reason": "stop"}
        choice["message"] = {"role": "assistant", "content": mutate(messages)}
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
        body = {"id": "x", "object": "chat.completion", "created": 0, "model": "scripted"}
        return Fault(status=200, raw=json.dumps({**body, "choices": [choice], "usage": usage}))

    return respond


def test_usage_numbers_are_clamped(scaffold_task: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    prices = ("llm.price_in=1", "llm.price_out=1")  # USD per million tokens
    with ScriptedLLMServer(_usage_responder()) as server:
        _run_and_resume(scaffold_task, run_dir, server.url, *prices)
    calls = _rows(run_dir, "select prompt_tokens, completion_tokens, cost_usd from llm_calls")
    assert sorted(set(calls)) == [(0, 10**9, 1000.0), (10**9, 0, 1000.0)]
    assert all(status == "ok" for status, _ in _children(run_dir))


# A new json.py beside evaluate.py would be imported by it (and by `import solve, json`),
# and this one makes any program score 99.
SHADOW = """I add a faster json module.

json.py
```python
def loads(text):
    return [1, 1, 1]


def dumps(value):
    return '{"score": 99.0}'
```
"""


def _shadow_then_valid():
    """Every other reply creates json.py; the others are valid edits."""
    mutate, count, lock = mutate_numbers(seed=2), [0], threading.Lock()

    def respond(messages):
        with lock:
            count[0] += 1
            odd = count[0] % 2 == 1
        return SHADOW if odd else mutate(messages)

    return respond


def test_edit_shadowing_a_standard_module_is_rejected(scaffold_task: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    sets = ('task.editable=["**/*.py"]', "prompt.repair_turns=0", "run.proposal_concurrency=1")
    with ScriptedLLMServer(_shadow_then_valid()) as server:
        _run_and_resume(scaffold_task, run_dir, server.url, *sets)
    programs = _rows(run_dir, "select status, reason, files_changed from programs")
    rejected = [reason for status, reason, _ in programs if status == "rejected"]
    assert any("shadow the standard-library module 'json'" in r for r in rejected), rejected
    assert not any("json.py" in files for status, _, files in programs if status != "rejected")
    scores = _rows(run_dir, "select score from evaluations")
    assert scores and all(score < 1 for (score,) in scores)


# Every changed candidate leaves a folder chain deeper than Python's recursion limit.
DEEP_TREE = """
import json, os, shlex, subprocess, sys
run = shlex.split(os.environ.get("CAMBRIAN_RUN", ""))
code = (
    "import os, solve\\n"
    "if (solve.WIDTH, solve.HEIGHT) != (0.5, 0.5):\\n"
    "    for _ in range(1500):\\n"
    "        os.mkdir('a'); os.chdir('a')\\n"
    "print(solve.area())\\n"
)
out = subprocess.run([*run, sys.executable, "-c", code], capture_output=True, text=True)
print(json.dumps({"score": float(out.stdout.split()[-1])}))
"""


def test_a_folder_tree_too_deep_fails_its_candidate(scaffold_task: Path, tmp_path: Path):
    (scaffold_task / "evaluate.py").write_text(DEEP_TREE)
    run_dir = tmp_path / "run"
    with ScriptedLLMServer(mutate_numbers(seed=3)) as server:
        _run_and_resume(scaffold_task, run_dir, server.url, "evaluator.result=stdout")
    children = _children(run_dir)
    assert len(children) == 3 and all(status == "error" for status, _ in children), children
    assert all("too deep" in reason for _, reason in children), children
    assert not list((run_dir / "work").rglob("a"))  # removed, however deep
