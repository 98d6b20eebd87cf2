"""Gather what the prompt shows about a parent: its files, result, peers and rejections."""

from __future__ import annotations

from typing import Any

from cambrian.agent._files import FileRules, language
from cambrian.config import PromptConfig
from cambrian.types import Archive, Evaluation, Program

EVOLVE_MARK = "EVOLVE-BLOCK-START"


def editable_contents(lineage: Any, rules: FileRules, commit: str) -> dict[str, str]:
    """The editable files of ``commit``: path -> text."""
    return lineage.read_files(commit, rules.editable_files(lineage.list_files(commit)))


def _file_list(files: dict[str, str]) -> list[dict[str, str]]:
    """Files as the templates expect them."""
    return [{"path": p, "content": c, "lang": language(p)} for p, c in sorted(files.items())]


def _feedback(evaluation: Evaluation | None, cap: int) -> str:
    """Evaluator feedback text for the LLM, capped at ``cap`` characters."""
    if evaluation is None or not evaluation.artifacts:
        return ""
    artifacts = dict(evaluation.artifacts)
    text = artifacts.pop("feedback", "")
    extra = "\n".join(f"{k}: {v}" for k, v in sorted(artifacts.items()))
    return "\n".join(t for t in (str(text), extra) if t)[:cap]


def parent_view(program: Program, evaluation: Evaluation | None, cap: int) -> dict[str, Any]:
    """The ``parent`` template variable."""
    ok = evaluation is not None and evaluation.ok
    return {
        "id": program.id,
        "ok": ok,
        "score": evaluation.score if ok else None,
        "metrics": dict(evaluation.metrics) if evaluation else {},
        "feedback": _feedback(evaluation, cap),
        "reason": (evaluation.reason if evaluation else "") or program.reason,
        "output_tail": (evaluation.output_tail if evaluation else "")[-cap:],
        "is_root": program.parent_id is None,
    }


def prompt_context(
    archive: Archive,
    lineage: Any,
    rules: FileRules,
    config: PromptConfig,
    parent: Program,
    task: dict[str, str],
) -> tuple[dict[str, Any], dict[str, str]]:
    """Template variables for a proposal from ``parent``, and the parent's editable files.

    Args:
        archive: Source of evaluations, inspirations and rejections.
        lineage: Git lineage holding every program's files.
        rules: Which files are editable.
        config: The ``[prompt]`` section.
        parent: The program to improve.
        task: ``description`` and ``direction`` of the task.
    """
    files = editable_contents(lineage, rules, parent.commit)
    inspirations = []
    for other in archive.sample_inspirations(parent, config.inspirations, config.top_k):
        evaluation = archive.evaluation(other.id)
        inspirations.append(
            {
                "id": other.id,
                "score": evaluation.score if evaluation else None,
                "metrics": dict(evaluation.metrics) if evaluation else {},
                "files": _file_list(editable_contents(lineage, rules, other.commit)),
            }
        )
    variables = {
        "description": task["description"],
        "direction": task["direction"],
        "files": _file_list(files),
        "single_file": len(files) == 1,
        "evolve_blocks": any(EVOLVE_MARK in text for text in files.values()),
        "parent": parent_view(parent, archive.evaluation(parent.id), config.feedback_chars),
        "inspirations": inspirations,
        "rejections": archive.recent_rejections(parent.id, config.rejections),
    }
    return variables, files
