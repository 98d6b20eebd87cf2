"""Per-model figures from the archive: calls, tokens, cost, and how often children improved.

They rebuild a model ensemble's bandit state on resume and feed ``cambrian status``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, case, func, not_, or_, select

from cambrian.archive._queries import DUPLICATE_ROW, EVALUATIONS, LLM_CALLS, PROGRAMS
from cambrian.types import ProgramStatus

_DONE = (ProgramStatus.EVALUATED, ProgramStatus.FAILED, ProgramStatus.REJECTED)


def model_stats(conn: Connection, run_id: str, maximize: bool) -> dict[str, dict[str, Any]]:
    """Per model: pulls, rewards, successes, reward_sum, calls, errors, tokens, cost.

    A proposal's call is a pull; its repair turns and meta reviews are calls only. A
    child's improvement is its score minus its parent's (the other way round when
    minimising) when both evaluations are ok, else 0; rejected and failed children and
    failed calls are outcomes worth 0.
    """
    out: dict[str, dict[str, Any]] = {}
    duplicates = select(PROGRAMS.c.id).where(PROGRAMS.c.run_id == run_id, DUPLICATE_ROW)
    program = LLM_CALLS.c.program_id
    not_duplicate = or_(program.is_(None), program.not_in(duplicates))
    calls = (
        select(
            LLM_CALLS.c.model,
            func.count(),
            func.sum(case((and_(LLM_CALLS.c.purpose == "propose", not_duplicate), 1), else_=0)),
            func.sum(case((LLM_CALLS.c.ok, 0), else_=1)),
            func.sum(LLM_CALLS.c.prompt_tokens),
            func.sum(LLM_CALLS.c.completion_tokens),
            func.sum(LLM_CALLS.c.cost_usd),
        )
        .where(LLM_CALLS.c.run_id == run_id)
        .group_by(LLM_CALLS.c.model)
    )
    for model, count, pulls, errors, prompt, completion, cost in conn.execute(calls):
        out[model] = {
            "pulls": int(pulls or 0),  # a proposal and its repair turns are one pull
            "calls": count,
            "errors": int(errors or 0),
            "prompt_tokens": int(prompt or 0),
            "completion_tokens": int(completion or 0),
            "cost_usd": float(cost or 0.0),
            "rewards": int(errors or 0),
            "successes": 0,
            "reward_sum": 0.0,
        }
    for model, _, outcomes, successes, reward_sum in conn.execute(
        _outcomes(run_id, maximize, PROGRAMS.c.model)
    ):
        entry = out.setdefault(
            model,
            {
                "pulls": 0,
                "calls": 0,
                "errors": 0,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "cost_usd": 0.0,
                "rewards": 0,
                "successes": 0,
                "reward_sum": 0.0,
            },
        )
        entry["rewards"] += int(outcomes or 0)
        entry["successes"] = int(successes or 0)
        entry["reward_sum"] = float(reward_sum or 0.0)
    return out


def outcome_stats(
    conn: Connection, run_id: str, maximize: bool, column: str
) -> dict[str, dict[str, Any]]:
    """Per value of a ``programs`` column (e.g. ``operator``): the bandit's figures.

    ``pulls`` counts every child, ``rewards`` the finished ones (rejected included),
    ``successes`` those that improved on their parent and ``reward_sum`` the improvements.
    """
    rows = conn.execute(_outcomes(run_id, maximize, PROGRAMS.c[column], finished=False))
    return {
        value: {
            "pulls": int(pulls),
            "rewards": int(outcomes or 0),
            "successes": int(successes or 0),
            "reward_sum": float(reward_sum or 0.0),
        }
        for value, pulls, outcomes, successes, reward_sum in rows
        if value
    }


def _outcomes(run_id: str, maximize: bool, column: Any, finished: bool = True) -> Any:
    """Children per value of ``column``: all, finished, improvements above 0, their sum."""
    child = EVALUATIONS.alias("child")
    parent = EVALUATIONS.alias("parent")
    delta = child.c.score - parent.c.score if maximize else parent.c.score - child.c.score
    both_ok = and_(child.c.status == "ok", parent.c.status == "ok")
    gain = case((and_(both_ok, delta > 0), delta), else_=0.0)
    done = PROGRAMS.c.status.in_([s.value for s in _DONE])
    query = (
        select(
            column,
            func.count(),
            func.sum(case((done, 1), else_=0)),
            func.sum(case((gain > 0, 1), else_=0)),
            func.sum(gain),
        )
        .select_from(
            PROGRAMS.outerjoin(child, child.c.program_id == PROGRAMS.c.id).outerjoin(
                parent, parent.c.program_id == PROGRAMS.c.parent_id
            )
        )
        .where(
            PROGRAMS.c.run_id == run_id,
            PROGRAMS.c.parent_id.is_not(None),
            column.is_not(None),
            not_(DUPLICATE_ROW),
        )
        .group_by(column)
    )
    return query.where(done) if finished else query
