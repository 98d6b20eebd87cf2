"""What the command line prints: progress lines, the run summary, one program."""

from __future__ import annotations

import json
import logging
from typing import Any

from rich.console import Console

from cambrian.types import AddStatus, Program

log = logging.getLogger("cambrian")


class ProgressPrinter:
    """Logs one line per finished candidate (evaluated or rejected).

    Args:
        ctx: The run context (for the archive's best score).
        quiet: Print nothing but warnings.
    """

    def __init__(self, ctx: Any, quiet: bool = False) -> None:
        self._ctx = ctx
        self._quiet = quiet
        self._best: float | None = None

    def __call__(self, event: Any) -> None:
        """Format ``event`` as one line."""
        if self._quiet:
            return
        program, evaluation = event.program, event.evaluation
        head = f"[{event.evaluated:>4}/{event.target}] {program.id}"
        if evaluation is None:
            log.info("%s rejected: %s", head, program.reason)
            return
        if not evaluation.ok:
            log.info("%s %s: %s", head, evaluation.status, evaluation.reason)
            return
        mark = ""
        if event.added in (AddStatus.NEW_CELL, AddStatus.IMPROVED):
            found = self._ctx.archive.best()
            if found is not None and found[0].id == program.id:
                mark = "  * new best"
        log.info(
            "%s ok    score %.6g  gen %d  %.2fs%s",
            head,
            evaluation.score,
            program.generation,
            evaluation.duration_s,
            mark,
        )


def print_summary(out: Console, ctx: Any, reason: str, error: str) -> None:
    """Why the run stopped, what it produced, and the best program."""
    stats = ctx.archive.stats()
    out.print(f"\nrun {ctx.run_id} stopped: {reason}" + (f" ({error})" if error else ""))
    out.print(
        f"  evaluated {stats['evaluated']} candidates, {stats['programs']} programs "
        f"({', '.join(f'{k} {v}' for k, v in sorted(stats['by_status'].items()))})"
    )
    out.print(
        f"  tokens {stats['prompt_tokens']} in / {stats['completion_tokens']} out, "
        f"{stats['llm_calls']} LLM calls, {stats['elapsed_s']:.1f}s"
    )
    found = ctx.archive.best()
    if found is None:
        out.print("  no program evaluated successfully")
    else:
        program, evaluation = found
        out.print(
            f"  best program {program.id} score {evaluation.score:.6g} "
            f"(generation {program.generation})"
        )
    out.print(f"  run folder {ctx.run_dir}; see `cambrian best --run-dir {ctx.run_dir}`")


def print_program(out: Console, records: Any, program: Program) -> None:
    """Metadata, evaluation, feedback and the diff against the parent."""
    out.print(
        f"program {program.id}  status {program.status}  island {program.island}  "
        f"generation {program.generation}"
    )
    out.print(f"  parent {program.parent_id or '-'}  model {program.model or '-'}")
    out.print(f"  commit {program.commit or '-'}  files {', '.join(program.files_changed) or '-'}")
    if program.reason:
        out.print(f"  reason {program.reason}", markup=False)
    evaluation = records.archive.evaluation(program.id)
    if evaluation is not None:
        out.print(
            f"evaluation {evaluation.status}  score {evaluation.score}  "
            f"{evaluation.duration_s:.2f}s",
            markup=False,
        )
        for name in ("metrics", "features", "artifacts"):
            value = dict(getattr(evaluation, name))
            if value:
                out.print(f"  {name} {json.dumps(value)}", markup=False)
        if evaluation.reason:
            out.print(f"  reason {evaluation.reason}", markup=False)
        if evaluation.output_tail.strip():
            out.print("output tail:", markup=False)
            out.print(evaluation.output_tail.rstrip(), markup=False)
    if program.commit and program.parent_id:
        parent = records.archive.get(program.parent_id)
        out.print("diff against parent:")
        out.print(records.lineage.diff(parent.commit, program.commit) or "(none)", markup=False)
