"""The cost budget's admission rule over concurrent calls (pure, no I/O)."""

from __future__ import annotations

import pytest

from cambrian.agent._budget import CostBudget
from cambrian.errors import BudgetError, LLMError


def test_no_cap_admits_every_call() -> None:
    budget = CostBudget(None, spent_usd=1e9)
    for _ in range(10):
        budget.start()
    assert budget.allows() and not budget.exhausted()


def test_the_first_call_runs_alone_until_a_cost_is_known() -> None:
    budget = CostBudget(1.0)
    assert budget.allows()
    budget.start()
    assert not budget.allows() and not budget.exhausted()  # wait for it, don't stop
    with pytest.raises(BudgetError, match="max_cost_usd"):
        budget.start()
    budget.finish(None)  # a failed call teaches nothing
    assert budget.allows() and budget.spent_usd == 0.0
    budget.start()
    budget.finish(0.25)
    assert budget.spent_usd == 0.25 and budget.in_flight == 0


def test_calls_in_flight_count_at_the_largest_cost_seen() -> None:
    budget = CostBudget(1.0)
    budget.start()
    budget.finish(0.125)
    budget.start()
    budget.finish(0.25)  # the estimate: 0.25 a call, the largest so far
    budget.start()  # 0.375 spent + 1 in flight + 1 more = 0.875: fits
    assert budget.allows()
    budget.start()
    assert not budget.allows() and not budget.exhausted()
    budget.finish(0.125)
    budget.finish(0.25)
    assert budget.spent_usd == 0.75 and budget.allows()
    budget.start()
    budget.finish(0.125)
    assert budget.spent_usd == 0.875 and budget.exhausted()  # 0.25 more would not fit


def test_spent_from_earlier_sessions_counts() -> None:
    assert CostBudget(1.0, spent_usd=1.0).exhausted()
    budget = CostBudget(1.0, spent_usd=0.5)
    budget.start()
    budget.finish(0.5)
    assert budget.exhausted()
    assert issubclass(BudgetError, LLMError)  # a refused repair turn ends like a failed one
