"""The evolution loop: steady state, proposals and evaluations in flight independently."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

from cambrian.agent._budget import BudgetedLLM, CostBudget
from cambrian.agent._children import DUPLICATE, ChildStore
from cambrian.agent._context import prompt_context, with_builtin_features
from cambrian.agent._islands import choose_islands
from cambrian.agent._meta import MetaReviewer
from cambrian.agent._models import forget_child, reward_child
from cambrian.agent._novelty import NEAR_DUPLICATE, get_novelty
from cambrian.agent._operators import OperatorPolicy
from cambrian.agent._propose import Proposer
from cambrian.agent._setup import RunContext
from cambrian.archive import new_program_id
from cambrian.errors import BudgetError, LLMError, SandboxError
from cambrian.llm import EnsembleLLM, ModelStats
from cambrian.sandbox import remove_tree
from cambrian.types import AddStatus, EvalStatus, Evaluation, Program, ProgramStatus

log = logging.getLogger("cambrian")
MAX_LLM_FAILURES = 3


@dataclass(frozen=True)
class Event:
    """One finished candidate, for progress displays."""

    program: Program
    evaluation: Evaluation | None  # None when the proposal was rejected
    added: AddStatus | None
    evaluated: int
    target: int


class Evolution:
    """Runs the evolution loop (see ARCHITECTURE.md) over the rooms of a ``RunContext``.

    Args:
        ctx: The opened run.
        on_event: Called after each rejection or evaluation (progress display).
        islands: The islands this controller proposes children on, in turn; None: all.

    Raises:
        ConfigError: ``islands`` is empty, repeats an island or names one out of range.
    """

    def __init__(
        self,
        ctx: RunContext,
        on_event: Callable[[Event], None] | None = None,
        *,
        islands: Sequence[int] | None = None,
    ) -> None:
        self.ctx = ctx
        self._islands = choose_islands(islands, ctx.config.archive.islands)
        self._on_event = on_event or (lambda event: None)
        self._queue: asyncio.Queue[Program] = asyncio.Queue()
        self._changed = asyncio.Condition()
        self._evaluating: set[str] = set()
        self._pending = self._proposing = self._llm_failures = self._evaluated = self._proposals = 0
        self._root: Program | None = None
        self.stop_reason = self.error = ""
        self._budget = CostBudget(ctx.config.run.max_cost_usd)
        llm = BudgetedLLM(ctx.llm, self._budget)  # every call, meta reviews too
        self._rng = random.Random(ctx.config.run.seed)
        self._busy: Counter[str] = Counter()  # proposals in flight per parent
        self._unevaluated: Counter[str] = Counter()  # children waiting for evaluation
        self._repeats = False  # the model has repeated itself (a duplicate) in this run
        self._duplicates = 0
        operators = OperatorPolicy(ctx.config.operators, seed=ctx.config.run.seed)
        self._proposer = Proposer(
            llm,
            ctx.config.prompt,
            operators,
            ctx.rules,
            ctx.templates,
            self._rng.choice,
            prefill=bool(ctx.config.llm.prefill),
        )
        self._novelty = get_novelty(ctx.config.novelty)
        self._children = ChildStore(ctx, self._novelty)
        self._meta = MetaReviewer.for_run(ctx, llm)
        self._reviews: set[asyncio.Task] = set()
        # Its own threads: asyncio's default pool has min(32, CPUs + 4), fewer than a
        # cluster's evaluation slots.
        self._pool = ThreadPoolExecutor(ctx.config.run.eval_concurrency, "cambrian-eval")

    # --- one candidate, in two halves -------------------------------------------------
    async def propose(self, island: int) -> Program | None:
        """Select a parent, prompt the LLM (with repair turns), apply its edit, commit."""
        ctx, config = self.ctx, self.ctx.config
        parent = await self._spread_parent(island)
        task = {"description": config.task.description, "direction": config.evaluator.direction}
        variables, files = prompt_context(
            ctx.archive, ctx.lineage, ctx.rules, config.prompt, parent, task
        )
        self._busy[parent.id] += 1
        try:  # a near-duplicate is asked again from scratch, up to novelty.max_attempts
            for _ in range(config.novelty.max_attempts if self._novelty else 1):
                staged: dict[str, tuple[str, str]] = {}
                check = partial(self._children.check, parent, variables, files, staged)
                proposal = await self._proposer.propose(variables, files, check)
                child = self._children.store(parent, island, proposal, staged)
                if child.status is ProgramStatus.REJECTED:
                    self._rejected(child)
                if not child.reason.startswith(NEAR_DUPLICATE):
                    break
        finally:
            self._busy[parent.id] -= 1
        if child.status is ProgramStatus.REJECTED:
            return None
        return child

    async def _spread_parent(self, island: int) -> Program:
        """A parent, passing over busy ones (up to three draws), or waiting for one.

        Proposals run ahead of evaluations. Once the model has repeated itself (a
        duplicate), a parent with a proposal in flight or a child waiting for evaluation
        is not asked until that is over: the answer would likely be the same child.
        """
        while True:
            for _ in range(3):
                parent = self.ctx.archive.sample_parent(island) or self._root
                if not self._busy[parent.id] and self._may_ask(parent.id):
                    return parent
            if self._may_ask(parent.id):
                return parent
            await self._wait(partial(self._may_ask, parent.id))

    def _may_ask(self, parent_id: str) -> bool:
        """Whether a proposal may be made from this parent now (see ``_spread_parent``)."""
        if self._stopping() or not self._repeats:
            return True
        return not (self._busy[parent_id] or self._unevaluated[parent_id])

    def _rejected(self, child: Program) -> None:
        """Credit a rejection: a duplicate says nothing about the model or the operator."""
        if child.reason == DUPLICATE:
            self._duplicates += 1
            self._repeats = True
            self._proposals -= 1  # counted apart, against their own cap
            forget_child(self.ctx, self._proposer.operators, child)
        else:
            reward_child(self.ctx, self._proposer.operators, child, None)
        self._on_event(Event(child, None, None, self._evaluated, self._target))

    async def evaluate(self, program: Program) -> Evaluation:
        """Check the program out into a fresh work dir, run the evaluator, store the result."""
        self.ctx.archive.set_status(program.id, ProgramStatus.EVALUATING)
        self._evaluating.add(program.id)
        loop = asyncio.get_running_loop()
        evaluation = await loop.run_in_executor(self._pool, self._evaluate_in_workdir, program)
        self._evaluating.discard(program.id)
        evaluation = with_builtin_features(self.ctx, program, evaluation)
        added = self.ctx.archive.add(program, evaluation)
        reward_child(self.ctx, self._proposer.operators, program, evaluation)
        if program.parent_id is not None:
            self._unevaluated[program.parent_id] -= 1
            # Run-wide: other workers sharing the archive count towards the iterations too.
            self._evaluated = max(self._evaluated + 1, self.ctx.archive.evaluated_count())
            review = asyncio.create_task(self._guard(partial(self._review, self._evaluated)))
            self._reviews.add(review)  # off the evaluation slot; cancelled at shutdown
            review.add_done_callback(self._reviews.discard)
        self._on_event(Event(program, evaluation, added, self._evaluated, self._target))
        self._check_target(evaluation)
        return evaluation

    async def _review(self, evaluated: int) -> None:
        """A meta review when one is due and the budget allows it."""
        if self._budget.allows():
            await self._meta.review_if_due(evaluated)
            await self._notify()  # its call no longer holds budget back

    def _evaluate_in_workdir(self, program: Program) -> Evaluation:
        """Blocking part of ``evaluate``; runs in a worker thread."""
        workdir = self.ctx.work_root / program.id
        remove_tree(workdir)
        workdir.parent.mkdir(parents=True, exist_ok=True)
        self.ctx.lineage.checkout(program.commit, workdir)
        try:
            return self.ctx.evaluator.evaluate(workdir, self.ctx.protected)
        except RecursionError:  # what the candidate left is too deep to check or copy back
            reason = "candidate code left a folder tree too deep to check (RecursionError)"
            return Evaluation(EvalStatus.ERROR, reason=reason)
        finally:
            remove_tree(workdir)

    # --- the steady-state scheduler ---------------------------------------------------
    @property
    def in_flight(self) -> tuple[int, int]:
        """``(LLM calls, evaluations)`` running now; read by progress displays."""
        return self._proposing, len(self._evaluating)

    @property
    def _target(self) -> int:
        return self.ctx.config.run.iterations

    async def run(self) -> str:
        """Run until iterations, target score, proposal cap or an error; return why it stopped."""
        stats = self.ctx.archive.stats()
        self._budget.spent_usd = stats["cost_usd"]
        if isinstance(self.ctx.llm, EnsembleLLM):  # the bandit resumes from the archive
            history = self.ctx.archive.model_stats()
            self.ctx.llm.restore({name: ModelStats(**row) for name, row in history.items()})
        self._proposer.operators.restore(self.ctx.archive.operator_stats())
        self._duplicates = stats["duplicates"]
        self._evaluated = stats["evaluated"]
        self._proposals = max(0, stats["programs"] - 1 - self._duplicates)
        workers: list[asyncio.Task] = []
        self.ctx.archive.join()
        try:
            orphans = self.ctx.archive.pending()
            self._root = await self._seed(orphans)
            workers = self._start_workers(orphans)
            await self._wait(lambda: bool(self.stop_reason) or self._exhausted())
            self.stop_reason = self.stop_reason or (
                "iterations" if self._evaluated >= self._target else "max_proposals"
            )
        except SandboxError as exc:  # while evaluating the initial program
            self.error, self.stop_reason = str(exc), "sandbox_error"
        except asyncio.CancelledError:
            self.stop_reason = "interrupted"
            raise
        finally:
            await self._shutdown(workers)
        return self.stop_reason

    def _start_workers(self, orphans: list[Program]) -> list[asyncio.Task]:
        """Queue the programs this worker claimed from gone workers, then start every worker."""
        self._enqueue(p for p in orphans if p.parent_id is not None)
        run = self.ctx.config.run
        proposers = [partial(self._propose_forever, i) for i in range(run.proposal_concurrency)]
        evaluators = [self._evaluate_forever] * run.eval_concurrency
        tasks = [*proposers, *evaluators, self._heartbeat_forever]
        return [asyncio.create_task(self._guard(work)) for work in tasks]

    def _enqueue(self, programs: Iterable[Program]) -> None:
        """Queue claimed programs for evaluation."""
        for program in programs:
            self._pending += 1
            self._unevaluated[program.parent_id] += 1
            self._queue.put_nowait(program)

    async def _heartbeat_forever(self) -> None:
        """Keep this worker's lease, and take over the programs of workers that died."""
        while True:
            await asyncio.sleep(self.ctx.config.archive.lease_s / 3)
            self.ctx.archive.heartbeat()
            self._enqueue(self.ctx.archive.pending(include_own=False))
            await self._notify()

    async def _seed(self, orphans: list[Program]) -> Program:
        """Create and evaluate the initial program (once per run, by the worker owning it)."""
        archive, lineage = self.ctx.archive, self.ctx.lineage
        root = archive.root()
        mine = root is None or any(p.id == root.id for p in orphans)
        if root is None:
            base = lineage.base()
            root = Program(
                id=new_program_id(),
                parent_id=None,
                island=0,
                generation=0,
                commit=base,
                tree=lineage.tree_of(base),
            )
            lineage.set_ref(root.id, base)
            archive.new_program(root)
        if mine and archive.evaluation(root.id) is None:
            evaluation = await self.evaluate(root)
            if not evaluation.ok:
                log.warning(
                    "the initial program fails (%s); asking the LLM to repair it", evaluation.reason
                )
        return root

    def _exhausted(self) -> bool:
        """True when no more work can finish: counts reached and nothing in flight."""
        idle = self._pending == 0 and self._proposing == 0
        cap = self.ctx.config.run.max_proposals
        capped = self._proposals >= cap or self._duplicates >= cap
        return self._evaluated >= self._target or (capped and idle)

    def _stopping(self) -> bool:
        """No new proposal may start: the run is ending or has nothing left to do."""
        return bool(self.stop_reason) or self._exhausted()

    def _has_room(self) -> bool:
        """Whether a proposer may start another LLM call."""
        in_flight = self._evaluated + self._pending + self._proposing
        backlog = self._pending >= 2 * self.ctx.config.run.eval_concurrency
        return in_flight < self._target and not backlog

    def _may_start(self) -> bool:
        """Whether a proposal may start: room for it, and its call fits the budget.

        When it does not fit only because of calls in flight, the proposal waits for them.
        """
        return self._has_room() and (self._budget.allows() or self._budget.exhausted())

    async def _propose_forever(self, worker: int) -> None:
        while True:
            await self._wait(lambda: self._may_start() or self._stopping())
            cap = self.ctx.config.run.max_proposals
            if self._proposals >= cap or self._duplicates >= cap or self._stopping():
                return
            if self._budget.exhausted():
                self.stop_reason = self.stop_reason or "max_cost"
                await self._notify()
                return
            self._proposals += 1
            self._proposing += 1
            try:
                island = self._islands[(self._proposals + worker) % len(self._islands)]
                program = await self.propose(island)
                self._llm_failures = 0
            except BudgetError:  # others' calls took the room while this one waited
                program = None
                self._proposals -= 1
            except LLMError as exc:
                program = None
                self._llm_failure(exc)
            finally:
                self._proposing -= 1
            if program is not None:
                self._enqueue([program])
            await self._notify()

    async def _evaluate_forever(self) -> None:
        while True:
            program = await self._queue.get()
            try:
                await self.evaluate(program)
            except SandboxError as exc:
                if not self.stop_reason:  # at shutdown the sandbox is closed on purpose
                    self.error, self.stop_reason = str(exc), "sandbox_error"
            finally:
                self._pending -= 1
            await self._notify()

    async def _guard(self, work: Callable[[], Awaitable[None]]) -> None:
        """The loop boundary: a bug in a worker is logged and stops the run; it never hangs.

        ``work`` is a coroutine function, called here, so a task cancelled before it
        starts leaves no coroutine unawaited.
        """
        try:
            await work()
        except Exception as exc:  # noqa: BLE001 - the loop's one catch-all
            log.exception("internal error in the evolution loop")
            self.error, self.stop_reason = f"internal error: {exc!r}", "internal_error"
            await self._notify()

    def _llm_failure(self, exc: LLMError) -> None:
        self._llm_failures += 1
        self.ctx.archive.record_llm_call(None, self.ctx.llm.name, ok=False, error=str(exc))
        log.warning("LLM call failed: %s", exc)
        if self._llm_failures >= MAX_LLM_FAILURES:
            self.error, self.stop_reason = str(exc), "llm_error"

    def _check_target(self, evaluation: Evaluation) -> None:
        target = self.ctx.config.run.target_score
        if target is None or not evaluation.ok:
            return
        maximize = self.ctx.config.evaluator.direction == "maximize"
        if (evaluation.score >= target) if maximize else (evaluation.score <= target):
            self.stop_reason = "target_score"

    async def _wait(self, predicate: Callable[[], bool]) -> None:
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _shutdown(self, workers: list[asyncio.Task]) -> None:
        """Stop every worker; evaluations cut short are marked interrupted for resume."""
        if self._evaluating:
            self.ctx.sandbox.close()  # kills running candidates so worker threads return
        if self.stop_reason != "interrupted" and self._reviews:  # a review in flight ends
            await asyncio.gather(*self._reviews, return_exceptions=True)
        workers = [*workers, *self._reviews]
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for program_id in self._evaluating:
            self.ctx.archive.set_status(program_id, ProgramStatus.INTERRUPTED, self.stop_reason)
        await self.ctx.llm.aclose()  # this loop's connections; a later run opens its own
