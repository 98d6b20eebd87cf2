"""Proposals in real runs: repair turns, kept replies, operators, crossover, duplicates."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

from cambrian.agent import Evolution, open_run
from cambrian.llm import ScriptedLLMServer

REGION_ONLY = ("operators.diff=0", "operators.rewrite=0", "operators.crossover=0")


def _run(task: Path, run_dir: Path, url: str, *overrides: str) -> tuple[str, dict]:
    ctx = open_run(
        task,
        run_dir,
        extra={"llm": {"model": "openai/scripted", "api_base": url}},
        overrides=['sandbox.backend="process"', *overrides],
    )
    try:
        reason = asyncio.run(Evolution(ctx).run())
        return reason, ctx.archive.stats()
    finally:
        ctx.close()


def _rows(run_dir: Path, query: str) -> list[tuple]:
    return sqlite3.connect(run_dir / "archive.db").execute(query).fetchall()


def _width(messages: list[dict]) -> float:
    return float(re.search(r"WIDTH = ([0-9.]+)", messages[1]["content"]).group(1))


def test_a_repair_turn_shows_the_error_and_its_fix_is_accepted(
    scaffold_task: Path, tmp_path: Path
) -> None:
    conversations: list[list[dict]] = []

    def responder(messages: list[dict]) -> str:
        conversations.append(messages)
        if len(messages) == 2:
            return "I would make the rectangle wider."  # no code: a format failure
        return f"```python\nWIDTH = {_width(messages) + 0.25}\n```"  # the EVOLVE-BLOCK's code

    run_dir = tmp_path / "run"
    with ScriptedLLMServer(responder) as server:
        reason, stats = _run(
            scaffold_task,
            run_dir,
            server.url,
            "run.iterations=1",
            "run.proposal_concurrency=1",
            *REGION_ONLY,
        )
    assert reason == "iterations" and stats["best_score"] == 0.375
    repair = conversations[1]
    assert [m["role"] for m in repair] == ["system", "user", "assistant", "user"]
    assert repair[2]["content"] == "I would make the rectangle wider."
    assert "could not be used: no edit found" in repair[3]["content"]
    assert "EVOLVE-BLOCK" in repair[3]["content"]
    calls = _rows(run_dir, "select purpose from llm_calls order by id")
    assert calls == [("propose",), ("repair",)]
    assert stats["replies"] == 2 and stats["accepted"] == 1 and stats["acceptance"] == 0.5
    program, operator, kind, templates = _rows(
        run_dir,
        "select id, operator, edit_kind, templates from programs where parent_id is not null",
    )[0]
    assert (operator, kind, templates) == ("region", "functions", "default")
    (reply,) = _rows(run_dir, f"select text from replies where program_id = '{program}'")[0]
    assert reply.startswith("I would make the rectangle wider.")
    assert "--- repair turn ---" in reply and "WIDTH = 0.75" in reply


def test_an_unchanged_echo_is_asked_for_a_real_change(scaffold_task: Path, tmp_path: Path) -> None:
    repairs: list[str] = []

    def responder(messages: list[dict]) -> str:
        if len(messages) > 2:
            repairs.append(messages[-1]["content"])
        return f"```python\nWIDTH = {_width(messages)}\nHEIGHT = 0.5\n```"  # the same code

    with ScriptedLLMServer(responder) as server:
        reason, stats = _run(
            scaffold_task,
            tmp_path / "run",
            server.url,
            "run.iterations=1",
            "run.max_proposals=2",
            "run.proposal_concurrency=1",
            *REGION_ONLY,
            'prompt.ideas=["Use the whole square."]',
        )
    assert reason == "max_proposals" and stats["evaluated"] == 0
    assert len(repairs) == 2
    assert all("edit changes nothing" in text and "Make a real change" in text for text in repairs)
    assert any("Use the whole square." in text for text in repairs)
    assert stats["acceptance"] == 0.0 and stats["replies"] == 4


def test_crossover_shows_a_second_program(scaffold_task: Path, tmp_path: Path) -> None:
    prompts: list[str] = []

    def responder(messages: list[dict]) -> str:
        prompts.append(messages[1]["content"])
        old = re.search(r"WIDTH = [0-9.]+", messages[1]["content"]).group(0)
        new = f"WIDTH = {_width(messages) + 0.05:.2f}"
        return f"solve.py\n<<<<<<< SEARCH\n{old}\n=======\n{new}\n>>>>>>> REPLACE\n"

    run_dir = tmp_path / "run"
    with ScriptedLLMServer(responder) as server:
        reason, _ = _run(
            scaffold_task,
            run_dir,
            server.url,
            "run.iterations=4",
            "run.proposal_concurrency=1",
            "run.eval_concurrency=1",
            "operators.region=0",
            "operators.rewrite=0",
            "operators.crossover=100",
        )
    assert reason == "iterations"
    assert any("## Second program" in text for text in prompts[1:])
    operators = {op for (op,) in _rows(run_dir, "select operator from programs")}
    assert "crossover" in operators


def test_duplicates_are_counted_apart_and_do_not_end_the_run_early(
    scaffold_task: Path, tmp_path: Path
) -> None:
    def responder(messages: list[dict]) -> str:  # deterministic: one child per parent
        old = re.search(r"WIDTH = [0-9.]+", messages[1]["content"]).group(0)
        new = f"WIDTH = {_width(messages) + 0.05:.2f}"
        return f"solve.py\n<<<<<<< SEARCH\n{old}\n=======\n{new}\n>>>>>>> REPLACE\n"

    run_dir = tmp_path / "run"
    with ScriptedLLMServer(responder) as server:
        reason, stats = _run(
            scaffold_task,
            run_dir,
            server.url,
            "run.iterations=3",
            "run.max_proposals=3",  # no room for a duplicate among the proposals
            "run.proposal_concurrency=2",  # both start from the initial program
            "run.eval_concurrency=1",
            "prompt.repair_turns=0",
        )
    assert stats["duplicates"] >= 1  # the second of the first two proposals
    assert reason == "iterations" and stats["evaluated"] == 3 and stats["best_score"] > 0.3
    rejected = _rows(run_dir, "select reason from programs where status = 'rejected'")
    assert all(r.startswith("duplicate:") for (r,) in rejected)
    # a parent whose proposal came back a duplicate waits for its child's evaluation
    # instead of being asked again and again
    assert stats["duplicates"] <= 2


def test_prefill_starts_the_answer_in_its_code_block(scaffold_task: Path, tmp_path: Path) -> None:
    asked: list[list[dict]] = []

    def responder(messages: list[dict]) -> str:  # a server that returns the continuation only
        asked.append(messages)
        return f"WIDTH = {_width(messages) + 0.25}\nHEIGHT = 0.5\n```"

    run_dir = tmp_path / "run"
    with ScriptedLLMServer(responder) as server:
        reason, stats = _run(
            scaffold_task,
            run_dir,
            server.url,
            "run.iterations=1",
            "run.proposal_concurrency=1",
            "llm.prefill=true",
            *REGION_ONLY,
            'prompt.ideas=["Widen it."]',
        )
    assert reason == "iterations" and stats["best_score"] == 0.375
    last = asked[0][-1]
    assert last["role"] == "assistant" and last["content"].startswith("```python\n")
    (solve,) = _rows(run_dir, "select text from replies")[0]
    assert solve.startswith("```python\n")  # kept as the model's whole answer
    ctx = open_run(None, run_dir)
    try:
        best = ctx.archive.best()[0]
        text = ctx.lineage.read_files(best.commit, ["solve.py"])["solve.py"]
    finally:
        ctx.close()
    assert "WIDTH = 0.75" in text and "# " + "Widen it." not in text  # the idea comment left


def test_the_line_operator_starts_the_answer_with_a_statement_s_left_side(
    scaffold_task: Path, tmp_path: Path
) -> None:
    heads: list[str] = []
    prompts: list[str] = []

    def responder(messages: list[dict]) -> str:  # continues the prefilled statement
        start = messages[-1]["content"]
        head = start.splitlines()[-1]
        heads.append(head)
        prompts.append(messages[1]["content"])
        value = 0.5 + len(heads) / 8  # a new value each time: no duplicates
        return {"WIDTH = ": f"{value}\n```", "HEIGHT = ": f"{value}\n```"}.get(
            head, "2 * WIDTH\n```"
        )

    run_dir = tmp_path / "run"
    with ScriptedLLMServer(responder) as server:
        reason, stats = _run(
            scaffold_task,
            run_dir,
            server.url,
            "run.iterations=5",
            "run.proposal_concurrency=1",
            "llm.prefill=true",
            "operators.line=1",
            "prompt.inspirations=2",
            *REGION_ONLY,
            "operators.region=0",
            "prompt.repair_turns=0",
        )
    assert reason == "iterations" and set(heads) <= {"WIDTH = ", "HEIGHT = ", "return "}
    assert all("Write only the new version of that one line" in p for p in prompts)
    assert not any("for inspiration" in p for p in prompts)  # one line: no other programs
    children = _rows(run_dir, "select operator from programs where parent_id is not null")
    assert children and {operator for (operator,) in children} == {"line"}
    assert stats["best_score"] > 0.25  # the initial area is 0.25; each line tried raises it


def test_a_docstring_only_change_is_refused_before_it_runs(
    scaffold_task: Path, tmp_path: Path
) -> None:
    reply = (
        '```python\ndef area():\n    """The area."""\n    return WIDTH * HEIGHT\n\n\n'
        "def unused():\n    return 0\n```"
    )
    run_dir = tmp_path / "run"
    with ScriptedLLMServer(lambda messages: reply) as server:
        reason, stats = _run(
            scaffold_task,
            run_dir,
            server.url,
            "run.iterations=1",
            "run.max_proposals=1",
            "prompt.repair_turns=0",
            "operators.diff=0",
        )
    assert reason == "max_proposals" and stats["evaluated"] == 0
    ((why,),) = _rows(run_dir, "select reason from programs where status = 'rejected'")
    assert why.startswith("edit changes nothing that runs")
