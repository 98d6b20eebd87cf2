"""Proposed children: refuse duplicates, stage their commit, store them with their calls."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from cambrian.agent._behaviour import same_behaviour
from cambrian.agent._context import editable_contents
from cambrian.agent._edit_parts import NO_EFFECT, EditResult
from cambrian.agent._novelty import novelty_check
from cambrian.agent._propose import Proposal
from cambrian.archive import CallRecord, new_program_id
from cambrian.types import Program, ProgramStatus

if TYPE_CHECKING:
    from cambrian.agent._setup import RunContext

DUPLICATE = "duplicate: same files as an existing program"


class ChildStore:
    """Checks edits against the archive and stores the children of one run.

    Args:
        ctx: The opened run.
        novelty: The near-duplicate filter (None: off).
    """

    def __init__(self, ctx: RunContext, novelty: Any) -> None:
        self._ctx = ctx
        self._novelty = novelty

    async def check(
        self,
        parent: Program,
        variables: dict,
        files: dict[str, str],
        staged: dict[str, tuple[str, str]],
        edit: EditResult,
    ) -> EditResult:
        """Refuse edits without effect, near-duplicates and duplicates; stage the commit."""
        if await asyncio.to_thread(_no_effect, files, edit, bool(variables["parent"]["ok"])):
            return replace(edit, error=NO_EFFECT)
        if self._novelty is not None:
            threshold = self._ctx.config.novelty.threshold
            elites = [
                editable_contents(self._ctx.lineage, self._ctx.rules, program.commit)
                for program in self._ctx.archive.island_elites(parent.island)
                if program.id != parent.id
            ]
            edit = await novelty_check(self._novelty, threshold, edit, variables, files, elites)
            if not edit.ok:
                return edit
        message = f"cambrian program\n\nparent: {parent.id}"
        commit, tree = self._ctx.lineage.commit(parent.commit, edit.changes, message)
        if self._ctx.archive.has_tree(tree):
            return replace(edit, error=DUPLICATE)
        staged["edit"] = (commit, tree)
        return edit

    def store(self, parent: Program, island: int, proposal: Proposal, staged: dict) -> Program:
        """Store the child (proposed or rejected), its reply and every LLM call it took."""
        ctx = self._ctx
        child = proposal.child(new_program_id(), parent, island, staged.get("edit"))
        if child.status is not ProgramStatus.REJECTED:
            ctx.lineage.set_ref(child.id, child.commit)
        calls = [
            CallRecord(
                completion.model,
                completion.prompt_tokens,
                completion.completion_tokens,
                completion.cost_usd,
                completion.latency_s,
                purpose="repair" if turn else "propose",
            )
            for turn, completion in enumerate(proposal.calls)
        ]
        if proposal.failure:
            calls.append(
                CallRecord(child.model or "", ok=False, error=proposal.failure, purpose="repair")
            )
        reply = proposal.replies[: ctx.config.prompt.reply_chars]
        ctx.archive.new_program(child, reply=reply, calls=calls)
        return child


def _no_effect(files: dict[str, str], edit: EditResult, parent_ok: bool) -> bool:
    """Whether every changed file is Python whose behaviour the edit leaves as it was."""
    python = [path for path in edit.changes if path.endswith(".py") and path in files]
    return len(python) == len(edit.changes) and all(
        same_behaviour(files[path], edit.changes[path], unused=parent_ok) for path in python
    )
