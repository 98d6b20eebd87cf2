"""Meta-recommendations: every ``meta.interval`` evaluations, one LLM call reviews the run.

The review reads the run's newest finished children, splits them into those that
improved on their parent and those that failed, were rejected or did not improve,
shows their diffs (capped) and asks for a few bullet lines of advice. The archive keeps
every note; the newest goes into each later prompt and its lines join the idea pool.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cambrian.agent._edits import strip_thinking
from cambrian.config import MetaConfig
from cambrian.errors import ArchiveError, LLMError
from cambrian.prompts import render_meta
from cambrian.types import LLM

log = logging.getLogger("cambrian")

#: One child's diff in the prompt, at most.
DIFF_CHARS = 1500
#: All diffs of one review together: each gets an equal share when they would exceed it.
PROMPT_DIFF_CHARS = 16000
REASON_CHARS = 300
DESCRIPTION_CHARS = 2000
#: Children read per review, as a multiple of ``meta.recent``: enough to fill both lists.
READ_FACTOR = 4


def improved(score: float | None, parent_score: float | None, maximize: bool) -> bool:
    """Whether a child beats its parent (running where the parent failed counts)."""
    if score is None or parent_score is None:
        return score is not None
    return score > parent_score if maximize else score < parent_score


def split_children(
    rows: Sequence[dict[str, Any]], maximize: bool, recent: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split children (newest first) into improving and failing ones, ``recent`` each at most.

    Args:
        rows: ``SqlArchive.recent_children`` rows.
        maximize: True when higher scores are better.
        recent: Most children kept in each list.

    Returns:
        ``(improving, failing)``; failing holds the failed, the rejected and the children
        that scored no better than their parent.
    """
    improving: list[dict[str, Any]] = []
    failing: list[dict[str, Any]] = []
    for row in rows:
        kept = improving if improved(row["score"], row["parent_score"], maximize) else failing
        if len(kept) < recent:
            kept.append(row)
    return improving, failing


def prose(text: str) -> str:
    """``text`` without its fenced code blocks (an unclosed one runs to the end).

    Recommendations are shown in every later prompt: code in them would pose as the
    program (a diff, a whole file) to the model that reads them.
    """
    kept, fence = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if fence:
            if stripped and stripped == fence[0] * len(stripped) and len(stripped) >= len(fence):
                fence = ""
            continue
        if stripped.startswith(("```", "~~~")):
            fence = stripped[: len(stripped) - len(stripped.lstrip(stripped[0]))]
            continue
        kept.append(line)
    return "\n".join(kept).strip()


def diff_cap(count: int) -> int:
    """Characters allowed for each of ``count`` diffs, so that all fit the prompt's share."""
    return min(DIFF_CHARS, PROMPT_DIFF_CHARS // max(count, 1))


def _cut(text: str, cap: int) -> str:
    """``text`` up to ``cap`` characters, marked when it was cut."""
    return text if len(text) <= cap else text[:cap].rstrip() + "\n... (cut)"


def _body(diff: str) -> str:
    """A git diff without its ``diff --git`` and ``index`` lines (the ---/+++ lines name files)."""
    lines = diff.splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith(("diff --git ", "index ")))


class MetaReviewer:
    """Writes the run's meta-recommendations from its recent results.

    Args:
        llm: The run's model (or ensemble).
        config: The ``[meta]`` section.
        archive: The run's archive (children, LLM calls and the notes themselves).
        lineage: Git lineage; ``diff(old_commit, new_commit)`` gives a child's change.
        templates: The prompt template sets; the first one's ``meta.j2`` is used.
        task: ``description`` and ``direction`` of the task.
    """

    def __init__(
        self,
        llm: LLM,
        config: MetaConfig,
        archive: Any,
        lineage: Any,
        templates: Sequence[Path],
        task: dict[str, str],
    ) -> None:
        self._llm = llm
        self._config = config
        self._archive = archive
        self._lineage = lineage
        self._templates = templates[0]
        self._task = task
        self._maximize = task["direction"] == "maximize"
        # Reviews started here: one in flight or failed is not started again.
        self._started = 0

    @classmethod
    def for_run(cls, ctx: Any, llm: LLM) -> MetaReviewer:
        """The reviewer of an opened run (a ``RunContext``), asking ``llm``."""
        config = ctx.config
        task = {"description": config.task.description, "direction": config.evaluator.direction}
        return cls(llm, config.meta, ctx.archive, ctx.lineage, ctx.templates, task)

    async def review_if_due(self, evaluated: int) -> float:
        """Review the recent children when ``evaluated`` reached the next multiple of the interval.

        Due when ``evaluated // meta.interval`` exceeds the notes stored so far (so a
        resumed run does not repeat a review). A failed call is logged and recorded,
        never raised; an empty reply stores nothing.

        Args:
            evaluated: Candidates evaluated in the run so far.

        Returns:
            The cost of the meta call in USD (0.0 when none was made or it failed).
        """
        interval = self._config.interval
        due = evaluated // interval if interval > 0 else 0
        if due <= self._started or due <= self._archive.meta_note_count():
            return 0.0
        self._started = due
        messages, model = await self._messages(evaluated)
        try:  # with the model of the newest child: a model ensemble counts no pull for it
            completion = await self._llm.complete(messages, model=model)
        except LLMError as exc:
            log.warning("meta review failed (the run goes on without it): %s", exc)
            self._archive.record_llm_call(
                None, self._llm.name, ok=False, error=str(exc), purpose="meta"
            )
            return 0.0
        self._archive.record_llm_call(
            None,
            completion.model,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            cost_usd=completion.cost_usd,
            latency_s=completion.latency_s,
            purpose="meta",
        )
        text = prose(strip_thinking(completion.text))[: self._config.max_chars].strip()
        if text:
            self._archive.add_meta_note(evaluated, completion.model, text)
        return completion.cost_usd

    async def _messages(self, evaluated: int) -> tuple[list[dict[str, str]], str | None]:
        """The meta prompt of recent children with their diffs, and the newest one's model."""
        recent = self._config.recent
        rows = self._archive.recent_children(READ_FACTOR * recent)
        improving, failing = split_children(rows, self._maximize, recent)
        shown = [*improving, *failing]
        diffs = await asyncio.to_thread(self._diffs, shown, diff_cap(len(shown)))
        views = [self._view(row, diff) for row, diff in zip(shown, diffs, strict=True)]
        notes = self._archive.meta_notes(1)
        variables = {
            "description": _cut(self._task["description"], DESCRIPTION_CHARS),
            "direction": self._task["direction"],
            "evaluated": evaluated,
            "improving": views[: len(improving)],
            "failing": views[len(improving) :],
            "previous": notes[0]["text"] if notes else "",
            "max_chars": self._config.max_chars,
        }
        model = next((row["model"] for row in rows if row.get("model")), None)
        return render_meta(self._templates, variables), model

    def _diffs(self, rows: Sequence[dict[str, Any]], cap: int) -> list[str]:
        """Each child's diff against its parent, capped ("" for a rejected child)."""
        out = []
        for row in rows:
            text = ""
            if row["commit"] and row["parent_commit"]:
                try:
                    text = _body(self._lineage.diff(row["parent_commit"], row["commit"]))
                except ArchiveError as exc:  # a missing object costs the diff, not the review
                    log.warning("meta review: no diff for %s: %s", row["id"], exc)
            out.append(_cut(text, cap))
        return out

    @staticmethod
    def _view(row: dict[str, Any], diff: str) -> dict[str, Any]:
        """One child as the template shows it."""
        reason = _cut(row["reason"] or "", REASON_CHARS)
        return {**row, "reason": reason, "operator": row["operator"] or "", "diff": diff}
