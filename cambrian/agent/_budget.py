"""The run's cost cap over concurrent LLM calls: spent, in flight, and one more call."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cambrian.errors import BudgetError
from cambrian.types import LLM, Completion


class CostBudget:
    """Admits LLM calls while they fit under ``run.max_cost_usd``.

    One more call may start when the cost spent, plus an estimate for each call in
    flight and for the new one, is within the cap. The estimate is the largest cost of a
    call finished in this session (prompts grow as a run goes, so a mean would lag);
    before any has finished, a call starts only when none is in flight. However many
    proposals run at once, a run so ends over its cap by about one call's cost at most.

    Args:
        max_cost_usd: The cap; None: no cap.
        spent_usd: Cost spent already (earlier sessions of the run).
    """

    def __init__(self, max_cost_usd: float | None, spent_usd: float = 0.0) -> None:
        self._cap = max_cost_usd
        self.spent_usd = spent_usd
        self.in_flight = 0
        self._per_call: float | None = None

    def allows(self) -> bool:
        """Whether one more call fits now."""
        if self._cap is None:
            return True
        if self.spent_usd >= self._cap:
            return False
        if self._per_call is None:
            return self.in_flight == 0
        return self.spent_usd + (self.in_flight + 1) * self._per_call <= self._cap

    def exhausted(self) -> bool:
        """Whether no call fits even with none in flight: the run is out of budget."""
        return self.in_flight == 0 and not self.allows()

    def start(self) -> None:
        """Count a call as in flight.

        Raises:
            BudgetError: If the call does not fit (see ``allows``).
        """
        if not self.allows():
            raise BudgetError(
                f"no LLM call fits under run.max_cost_usd={self._cap} now "
                f"(${self.spent_usd:.4f} spent, {self.in_flight} call(s) in flight)"
            )
        self.in_flight += 1

    def finish(self, cost_usd: float | None) -> None:
        """End a started call: its cost, or None when it failed or was cancelled."""
        self.in_flight -= 1
        if cost_usd is not None:
            self._per_call = max(self._per_call or 0.0, cost_usd)
            self.spent_usd += cost_usd


class BudgetedLLM:
    """``llm`` with every call admitted by ``budget`` and its cost counted there.

    Args:
        llm: The run's model (or ensemble).
        budget: The run's cost budget.
    """

    def __init__(self, llm: LLM, budget: CostBudget) -> None:
        self._llm = llm
        self._budget = budget
        self.name = llm.name

    async def complete(
        self, messages: Sequence[Mapping[str, str]], *, model: str | None = None
    ) -> Completion:
        """Return the model's reply, once the budget admits the call.

        Raises:
            BudgetError: If the call does not fit under the cap now.
            LLMError: When the model fails after its retries.
        """
        self._budget.start()
        cost = None
        try:
            completion = await self._llm.complete(messages, model=model)
            cost = completion.cost_usd
        finally:
            self._budget.finish(cost)
        return completion

    def errors_by_model(self) -> dict[str, dict[str, int]]:
        """Failed attempts of the wrapped model, per model, by class."""
        return self._llm.errors_by_model()

    async def aclose(self) -> None:
        """Close the wrapped model's connections for the running event loop."""
        await self._llm.aclose()
