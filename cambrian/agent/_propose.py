"""One proposal: operator and idea, prompt, LLM reply, edit, and repair turns.

A reply that gives no usable edit (a format error, unchanged code, a duplicate, a
near-duplicate) gets up to ``prompt.repair_turns`` follow-up turns in the same
conversation, each showing why the last answer was refused. Every call is returned, so
the loop records each one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cambrian.agent._edit_parts import reject
from cambrian.agent._edits import EditResult, apply_reply
from cambrian.agent._files import FileRules
from cambrian.agent._operators import (
    LINE_IDEA,
    OperatorPolicy,
    fill_idea,
    pick_line,
    read_ideas,
    recommendation_lines,
    simple_lines,
)
from cambrian.config import PromptConfig
from cambrian.errors import LLMError
from cambrian.prompts import render_answer_start, render_messages, render_repair
from cambrian.types import LLM, Completion, Program, ProgramStatus

#: Refusals a repair turn does not handle: a near-duplicate is asked again from scratch
#: (``novelty.max_attempts``), and an oversized reply is not worth answering.
_FINAL = ("reply too long", "near-duplicate")
_UNCHANGED = ("edit changes nothing", "duplicate")
Check = Callable[[EditResult], Awaitable[EditResult]]


@dataclass
class Proposal:
    """What one proposal produced.

    Attributes:
        edit: The edit of the last reply (its ``error`` set when it was refused).
        calls: Every completion, the first proposal call then the repair turns.
        operator: The variation operator used.
        templates: Name of the template set used.
        failure: Why a repair turn's call failed after its retries ("" when none did).
    """

    edit: EditResult
    calls: list[Completion] = field(default_factory=list)
    operator: str = ""
    templates: str = ""
    failure: str = ""

    def child(
        self, program_id: str, parent: Program, island: int, staged: tuple[str, str] | None
    ) -> Program:
        """The child program: proposed with its staged ``(commit, tree)``, or rejected."""
        edit = self.edit
        child = Program(
            id=program_id,
            parent_id=parent.id,
            island=island,
            generation=parent.generation + 1,
            commit="",
            files_changed=tuple(sorted(edit.changes)),
            model=self.calls[-1].model,
            operator=self.operator,
            edit_kind=edit.kind,
            templates=self.templates[:64],  # the column's width
        )
        if edit.ok and staged is not None:
            return replace(child, commit=staged[0], tree=staged[1])
        return replace(child, status=ProgramStatus.REJECTED, reason=edit.error)

    @property
    def replies(self) -> str:
        """The replies, joined, with a separator line before each repair turn's answer."""
        return "\n\n--- repair turn ---\n\n".join(call.text for call in self.calls)


class Proposer:
    """Asks the LLM for one change to a parent and turns the reply into an edit.

    Args:
        llm: The model (or ensemble).
        config: The ``[prompt]`` section.
        operators: The operator policy (shared by the run, credited by the loop).
        rules: Which files are editable.
        templates: The template set folders to vary between.
        rng_choice: Picks one element of a sequence (the loop's seeded RNG).
        prefill: Begin each reply inside its code block (``llm.prefill``).
    """

    def __init__(
        self,
        llm: LLM,
        config: PromptConfig,
        operators: OperatorPolicy,
        rules: FileRules,
        templates: tuple[Path, ...],
        rng_choice: Callable[[Any], Any],
        *,
        prefill: bool = False,
    ) -> None:
        self._llm = llm
        self._config = config
        self.operators = operators
        self._rules = rules
        self._templates = templates
        self._choice = rng_choice
        self._ideas = {folder: read_ideas(folder) for folder in templates}
        self._prefill = prefill

    async def propose(
        self, variables: dict[str, Any], files: dict[str, str], check: Check
    ) -> Proposal:
        """Run one proposal (with its repair turns) from the parent in ``variables``.

        Args:
            variables: The prompt context of the parent (``prompt_context``).
            files: The parent's editable files.
            check: Further checks of a parsed edit (novelty, duplicates); returns the edit,
                with ``error`` set when it is refused.
        """
        templates = self._choice(self._templates)
        operator = self._operator(variables, files)
        pool = self._idea_pool(templates, variables.get("recommendations", ""))
        idea, head = self._idea(pool, files, operator) if variables["parent"]["ok"] else ("", "")
        view = {**variables, "operator": operator, "idea": idea}
        if operator != "crossover":
            view["second"] = None
        if operator == "line":  # one statement of this program: other programs' files do
            view["inspirations"] = []  # not help pick it and would cost a cached prefix
        start = render_answer_start(templates, view) + head if self._prefill else ""
        messages = render_messages(templates, view)
        proposal = Proposal(EditResult(), operator=operator, templates=templates.name)
        for turn in range(self._config.repair_turns + 1):
            try:
                completion = await self._ask(messages, start, proposal)
            except LLMError as exc:
                if not proposal.calls:
                    raise  # no reply at all: the loop counts a failed call
                proposal.failure = str(exc)  # the first reply is kept, with its cost
                proposal.edit = EditResult(error=f"repair turn failed: {exc}"[:300])
                break
            text = self._without_idea(completion.text, view["idea"]) if start else completion.text
            edit = await self._apply(text, files)
            proposal.edit = await check(edit) if edit.ok else edit
            if proposal.edit.ok or turn == self._config.repair_turns or _final(proposal.edit):
                break
            again, head = (
                self._idea(pool, files, operator) if variables["parent"]["ok"] else ("", "")
            )
            retry = {**view, "error": proposal.edit.error, "idea": again}
            retry["unchanged"] = proposal.edit.error.startswith(_UNCHANGED)
            view = retry
            start = render_answer_start(templates, view) + head if self._prefill else ""
            messages = [
                *messages,
                {"role": "assistant", "content": completion.text},
                {"role": "user", "content": render_repair(templates, retry)},
            ]
        return proposal

    async def _ask(self, messages: list[dict], start: str, proposal: Proposal) -> Completion:
        """One call (a follow-up goes to the same model), its reply begun with ``start``.

        With prefill, the model continues an assistant message holding ``start``; servers
        differ in whether the reply repeats it, so it is put back where missing.
        """
        follow_up = proposal.calls[-1].model if proposal.calls else None
        asked = [*messages, {"role": "assistant", "content": start}] if start else messages
        completion = await self._llm.complete(asked, model=follow_up)
        if start and not completion.text.startswith(start):
            completion = replace(completion, text=start + completion.text)
        proposal.calls.append(completion)
        return completion

    async def _apply(self, text: str, files: dict[str, str]) -> EditResult:
        """The reply's edit, refused when a file it creates would shadow a module."""
        edit = await asyncio.to_thread(apply_reply, text, files, self._rules.is_editable)
        shadow = self._rules.shadowing(edit.changes.keys() - files.keys())
        return reject(shadow, edit.kind) if shadow else edit

    @staticmethod
    def _without_idea(text: str, idea: str) -> str:
        """The reply without the idea comment the prefill put at the top of its code."""
        return text.replace(f"# {idea}\n", "", 1) if idea else text

    def _idea(self, pool: list[str], files: dict[str, str], operator: str) -> tuple[str, str]:
        """One idea from ``pool`` and the code the answer starts with (``line`` only).

        An idea's ``{line}`` is filled with a line of the parent's code. The ``line``
        operator names a simple statement (see ``pick_line``) in one of the pool's
        ``{line}`` ideas, and its answer starts with that statement's left side.
        """
        rng = self.operators.rng
        if operator != "line":
            return fill_idea(self.operators.idea(pool), files, rng), ""
        line, head = pick_line(files, rng) or ("", "")
        ideas = [idea for idea in pool if "{line}" in idea] or [LINE_IDEA]
        return self.operators.idea(ideas).replace("{line}", line), head

    def _operator(self, variables: dict[str, Any], files: dict[str, str]) -> str:
        """The operator: line only from a working parent, crossover only with a second one."""
        available = ["diff", "region", "rewrite"]
        if variables["parent"]["ok"] and simple_lines(files):  # a failed one needs a fix
            available.append("line")
        if variables.get("second") and variables["parent"]["ok"]:
            available.append("crossover")
        return self.operators.choose(available)

    def _idea_pool(self, templates: Path, recommendations: str) -> list[str]:
        """Ideas to sample from: the task's, the template set's and the meta review's."""
        own = list(self._config.ideas) + recommendation_lines(recommendations)
        return own * 2 + self._ideas[templates] if own else self._ideas[templates]


def _final(edit: EditResult) -> bool:
    """Whether a refusal is one a repair turn cannot change."""
    return edit.error.startswith(_FINAL)
