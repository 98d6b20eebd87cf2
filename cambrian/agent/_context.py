"""Gather what the prompt shows about a parent: its files, result, peers and rejections."""

from __future__ import annotations

import difflib
import itertools
import json
from dataclasses import replace
from typing import Any

from cambrian.agent._files import FileRules, language
from cambrian.config import PromptConfig
from cambrian.evaluators.compat import PRIVATE_METRICS
from cambrian.types import Archive, Evaluation, Program

EVOLVE_MARK = "EVOLVE-BLOCK-START"
#: The diff shown for another program whose editable files equal the parent's.
IDENTICAL = "(no difference: its files are the same as the current program's)"
#: Most metrics a prompt shows of one program; the rest are stored, not shown.
SHOWN_METRICS = 32
#: Longest metric name or non-numeric value a prompt shows (longer ones are cut).
SHOWN_CHARS = 100


def editable_contents(lineage: Any, rules: FileRules, commit: str) -> dict[str, str]:
    """The editable files of ``commit``: path -> text."""
    return lineage.read_files(commit, rules.editable_files(lineage.list_files(commit)))


def shown_metrics(evaluation: Evaluation | None) -> dict[str, Any]:
    """The metrics the LLM may see: the first ``SHOWN_METRICS`` but the private ones, cut."""
    if evaluation is None:
        return {}
    public = (item for item in evaluation.metrics.items() if item[0] != PRIVATE_METRICS)
    return {_cut(str(k)): _shown(v) for k, v in itertools.islice(public, SHOWN_METRICS)}


def _shown(value: Any) -> Any:
    """A metric value as a prompt shows it: a number as it is, anything else as cut text."""
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        try:
            return float(value)  # the template formats numbers, and only floats that fit
        except OverflowError:
            pass
    return _cut(value if isinstance(value, str) else json.dumps(value, default=str))


def _cut(text: str) -> str:
    """``text``, cut to ``SHOWN_CHARS`` characters."""
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


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
        "metrics": shown_metrics(evaluation),
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
    chosen = archive.sample_inspirations(
        parent, config.inspirations, config.top_k, config.ancestors
    )
    for other in chosen:
        evaluation = archive.evaluation(other.id)
        theirs = editable_contents(lineage, rules, other.commit)
        inspirations.append(
            {
                "id": other.id,
                "score": evaluation.score if evaluation else None,
                "metrics": shown_metrics(evaluation),
                "files": _file_list(theirs),
                "diff": changes_against(files, theirs),
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
        # crossover's partner; the operator decides whether the prompt shows it
        "second": inspirations[0] if inspirations else None,
        "recommendations": _latest_note(archive),
    }
    return variables, files


def changes_against(ours: dict[str, str], theirs: dict[str, str]) -> str:
    """Another program as a unified diff against ours, when that is the shorter way to show it.

    Programs of one run mostly differ in a few lines: the diff shows what the other one
    does differently in a fraction of the prompt tokens. "" when it is not under half
    the size of the other program's files (the template then shows them whole);
    ``IDENTICAL`` when the editable files are the same.
    """
    parts = []
    for path in sorted(ours.keys() | theirs.keys()):
        mine, other = ours.get(path, ""), theirs.get(path, "")
        if mine != other:
            lines = difflib.unified_diff(
                mine.splitlines(keepends=True),
                other.splitlines(keepends=True),
                f"current/{path}",
                f"other/{path}",
                n=2,
            )
            parts.append("".join(line if line.endswith("\n") else line + "\n" for line in lines))
    text = "".join(parts).rstrip("\n")
    if not text:
        return IDENTICAL
    whole = sum(len(content) for content in theirs.values())
    return text if len(text) < whole / 2 else ""


def _latest_note(archive: Archive) -> str:
    """The newest meta-recommendation text ("" before the first review)."""
    notes = archive.meta_notes(1)
    return notes[0]["text"] if notes else ""


#: Features the agent computes itself; an axis in ``archive.features`` may name them.
BUILTIN_FEATURES = ("loc", "lines_changed", "eval_time_s")


def builtin_features(
    lineage: Any,
    rules: FileRules,
    program: Program,
    parent_commit: str | None,
    evaluation: Evaluation,
    names: Any,
) -> dict[str, float]:
    """The built-in features named in ``names`` (the configured axes) for one evaluation.

    ``loc``: non-blank lines of the editable files; ``lines_changed``: lines added plus
    removed from the parent (0 for the initial program); ``eval_time_s``: evaluator time.
    """
    wanted = [name for name in BUILTIN_FEATURES if name in names]
    out: dict[str, float] = {}
    if "loc" in wanted:
        files = editable_contents(lineage, rules, program.commit)
        out["loc"] = float(
            sum(1 for t in files.values() for line in t.splitlines() if line.strip())
        )
    if "lines_changed" in wanted:
        out["lines_changed"] = float(_lines_changed(lineage, program, parent_commit))
    if "eval_time_s" in wanted:
        out["eval_time_s"] = float(evaluation.duration_s)
    return out


def _lines_changed(lineage: Any, program: Program, parent_commit: str | None) -> int:
    """Lines added plus removed in the program's changed files, against its parent."""
    if parent_commit is None or not program.files_changed:
        return 0
    paths = list(program.files_changed)
    old = lineage.read_files(
        parent_commit, [p for p in paths if p in set(lineage.list_files(parent_commit))]
    )
    new = lineage.read_files(
        program.commit, [p for p in paths if p in set(lineage.list_files(program.commit))]
    )
    changed = 0
    for path in paths:
        diff = difflib.ndiff(old.get(path, "").splitlines(), new.get(path, "").splitlines())
        changed += sum(1 for line in diff if line[:1] in "+-")
    return changed


def with_builtin_features(ctx: Any, program: Program, evaluation: Evaluation) -> Evaluation:
    """Merge the built-in features the axes name; the evaluator's own values win."""
    axes = ctx.config.archive.features
    if not any(name in axes for name in BUILTIN_FEATURES):
        return evaluation  # the common case: no extra reads on the hot path
    parent = None if program.parent_id is None else ctx.archive.get(program.parent_id)
    base = None if parent is None else parent.commit
    extra = builtin_features(ctx.lineage, ctx.rules, program, base, evaluation, axes)
    if not extra:
        return evaluation
    return replace(evaluation, features={**extra, **evaluation.features})
