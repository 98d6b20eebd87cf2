"""What the command line prints: progress lines, the run summary, one program."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table

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


def acceptance_text(stats: dict[str, Any]) -> str:
    """'62% (31 of 50 replies)': the share of LLM replies that became evaluated candidates."""
    replies, accepted = stats.get("replies", 0), stats.get("accepted", 0)
    if not replies:
        return "- (no replies yet)"
    return f"{accepted / replies:.0%} ({accepted} of {replies} replies)"


def operator_table(
    stats: dict[str, Any], operators: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Per variation operator: children, accepted, improved and the share improved.

    Args:
        stats: ``SqlArchive.stats()`` (for ``accepted_by_operator``).
        operators: ``SqlArchive.operator_stats()``.
    """
    accepted = stats.get("accepted_by_operator", {})
    table = {}
    for name in sorted(set(operators) | set(accepted)):
        row = operators.get(name, {})
        children, improved = row.get("pulls", 0), row.get("successes", 0)
        table[name] = {
            "children": children,
            "accepted": accepted.get(name, 0),
            "improved": improved,
            "improved_share": improved / children if children else None,
            "finished": row.get("rewards", 0),
            "reward_sum": row.get("reward_sum", 0.0),
        }
    return table


def status_lines(stats: dict[str, Any]) -> Iterator[str]:
    """The acceptance, duplicates, stage stops and operator table of ``cambrian status``."""
    yield f"  acceptance   {acceptance_text(stats)}, {stats.get('duplicates', 0)} duplicates"
    stopped = stats.get("stopped_by_stage", {})
    if stopped:
        listed = ", ".join(f"stage {stage}: {n}" for stage, n in stopped.items())
        yield f"  stopped      {listed}"
    operators = stats.get("operators", {})
    if operators:
        yield f"  {'operator':<12} {'children':>8} {'accepted':>8} {'improved':>8} {'share':>6}"
    for name, row in operators.items():
        share = "-" if row["improved_share"] is None else f"{row['improved_share']:.0%}"
        yield (
            f"  {name:<12} {row['children']:>8} {row['accepted']:>8} "
            f"{row['improved']:>8} {share:>6}"
        )
    yield from meta_lines(stats)


def meta_status(archive: Any) -> dict[str, Any]:
    """``meta_notes`` (how many) and ``latest_recommendation`` (its text, "" before any)."""
    latest = archive.meta_notes(1)
    return {
        "meta_notes": archive.meta_note_count(),
        "latest_recommendation": latest[0]["text"] if latest else "",
    }


def meta_lines(stats: dict[str, Any], width: int = 100) -> Iterator[str]:
    """The meta-recommendation count and the newest note's lines, each cut to ``width``."""
    if not stats.get("meta_notes"):
        return
    yield f"  meta notes   {stats['meta_notes']}, the latest:"
    for line in stats.get("latest_recommendation", "").splitlines()[:8]:
        if line.strip():
            yield f"    {line.strip()[:width]}"


def print_summary(out: Console, ctx: Any, reason: str, error: str) -> None:
    """Why the run stopped, what it produced, and the best program."""
    stats = ctx.archive.stats()
    out.print(
        f"\nrun {ctx.run_id} stopped: {reason}" + (f" ({error})" if error else ""), markup=False
    )
    out.print(
        f"  evaluated {stats['evaluated']} candidates, {stats['programs']} programs "
        f"({', '.join(f'{k} {v}' for k, v in sorted(stats['by_status'].items()))})"
    )
    out.print(
        f"  tokens {stats['prompt_tokens']} in / {stats['completion_tokens']} out, "
        f"{stats['llm_calls']} LLM calls, {stats['elapsed_s']:.1f}s"
    )
    out.print(f"  acceptance {acceptance_text(stats)}, {stats['duplicates']} duplicates")
    for name, row in operator_table(stats, ctx.archive.operator_stats()).items():
        out.print(
            f"  operator {name}: {row['children']} children, {row['accepted']} accepted, "
            f"{row['improved']} improved",
            markup=False,
        )
    for model, counts in sorted(ctx.llm.errors_by_model().items()):
        listed = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()))
        out.print(f"  model {model}: failed attempts: {listed}", markup=False)
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
    out.print(
        f"  operator {program.operator or '-'}  edit kind {program.edit_kind or '-'}  "
        f"templates {program.templates or '-'}",
        markup=False,
    )
    out.print(f"  commit {program.commit or '-'}  files {', '.join(program.files_changed) or '-'}")
    if program.reason:
        out.print(f"  reason {program.reason}", markup=False)
    evaluation = records.archive.evaluation(program.id)
    if evaluation is not None:
        out.print(
            f"evaluation {evaluation.status}  score {evaluation.score}  "
            f"stage {evaluation.stage}  {evaluation.duration_s:.2f}s",
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
    reply = records.archive.reply(program.id)
    if reply:  # for a rejected program, the reply is what explains the rejection
        out.print("Reply:")
        out.print(reply.rstrip(), markup=False)


def fan_out(*hooks: Callable[[Any], None]) -> Callable[[Any], None]:
    """One ``on_event`` hook calling each of ``hooks`` in turn."""

    def call(event: Any) -> None:
        for hook in hooks:
            hook(event)

    return call


class LivePanel:
    """The live terminal panel of ``cambrian run``; pass it to ``rich.live.Live``.

    Args:
        ctx: The run context (archive statistics: tokens, cost, best score).
        evolution: Read for the in-flight counts; set after construction if needed.
        clock: Monotonic clock (seconds).
    """

    def __init__(
        self, ctx: Any, evolution: Any = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ctx = ctx
        self.evolution = evolution
        self._clock = clock
        self._start = clock()
        self._first_evaluated: int | None = None
        self._evaluated = self._target = 0
        self._best: float | None = None
        self._best_at: tuple[float, int] | None = None
        self._failures: Counter[str] = Counter()
        self._stats: dict[str, Any] = {}
        self._stats_at = -1.0

    def __call__(self, event: Any) -> None:
        """Take in one finished candidate."""
        self._evaluated, self._target = event.evaluated, event.target
        if self._first_evaluated is None:
            self._first_evaluated = event.evaluated - (event.evaluation is not None)
        program, evaluation = event.program, event.evaluation
        if evaluation is None:
            self._failures[f"rejected: {_kind(program.reason)}"] += 1
        elif not evaluation.ok:
            self._failures[f"{evaluation.status}: {_kind(evaluation.reason)}"] += 1
        elif event.added in (AddStatus.NEW_CELL, AddStatus.IMPROVED):
            maximize = self._ctx.config.evaluator.direction == "maximize"
            score = evaluation.score
            if self._best is None or (score > self._best if maximize else score < self._best):
                self._best, self._best_at = score, (self._clock(), event.evaluated)
        if self._clock() - self._stats_at > 0.5:
            self._stats, self._stats_at = self._ctx.archive.stats(), self._clock()

    def __rich__(self) -> Panel:
        """Render the panel (rich calls this on every refresh)."""
        now = self._clock()
        done, target = self._evaluated, max(self._target, 1)
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        bar = ProgressBar(total=target, completed=min(done, target), width=40)
        grid.add_row("evaluated", Group(f"{done}/{target}  {_eta(self._rate(now), target - done)}"))
        grid.add_row("", bar)
        grid.add_row("best", self._best_line(now))
        llm, evals = self.evolution.in_flight if self.evolution is not None else (0, 0)
        grid.add_row("in flight", f"{llm} LLM calls, {evals} evaluations")
        stats = self._stats
        grid.add_row(
            "tokens",
            f"{stats.get('prompt_tokens', 0)} in / {stats.get('completion_tokens', 0)} out  "
            f"cost ${stats.get('cost_usd', 0.0):.4f}  ({stats.get('llm_calls', 0)} calls)",
        )
        grid.add_row("acceptance", acceptance_text(stats))
        for reason, count in self._failures.most_common(4):
            grid.add_row(
                "failures" if reason == self._failures.most_common(1)[0][0] else "",
                f"{count} x {reason}",
            )
        title = f"cambrian run {self._ctx.run_id}  ({_clock_text(now - self._start)})"
        return Panel(grid, title=title, title_align="left", expand=False)

    def _rate(self, now: float) -> float:
        """Candidates evaluated per second in this session."""
        first = self._first_evaluated or 0
        elapsed = now - self._start
        return (self._evaluated - first) / elapsed if elapsed > 0 else 0.0

    def _best_line(self, now: float) -> str:
        """Best score and when it last improved."""
        if self._best is None or self._best_at is None:
            best = self._stats.get("best_score")
            return "-" if best is None else f"{best:.6g}"
        at, candidate = self._best_at
        return f"{self._best:.6g}  (improved {_clock_text(now - at)} ago, at candidate {candidate})"


def _kind(reason: str) -> str:
    """The first clause of a failure reason, kept short."""
    head = (reason or "unknown").strip().splitlines()[0] if (reason or "").strip() else "unknown"
    return head.split(":", 1)[0][:50]


def _eta(rate: float, remaining: int) -> str:
    """'ETA 1m20s' from a rate and the work left ('' until a rate is known)."""
    if remaining <= 0:
        return "done"
    return f"ETA {_clock_text(remaining / rate)}" if rate > 0 else "ETA -"


def _clock_text(seconds: float) -> str:
    """Seconds as '1h02m', '3m05s' or '12s'."""
    seconds = int(max(seconds, 0))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def render_tree(
    rows: list[list[Any]], cells: list[dict[str, Any]], maximize: bool, depth: int | None
) -> Iterator[str]:
    """Yield the lineage as indented text lines, one per program (``cambrian tree``).

    Args:
        rows: ``ArchiveViews.tree`` rows (columns ``TREE_COLUMNS``).
        cells: ``ArchiveViews.cells`` (the elites, marked ``E``; the best gets ``*``).
        maximize: True when higher scores are better.
        depth: Deepest generation printed (None: all).
    """
    elites = {cell["program_id"] for cell in cells}
    order = sorted(cells, key=lambda c: c["score"], reverse=maximize)
    best = order[0]["program_id"] if order else None
    children: dict[str | None, list[list[Any]]] = {}
    ids = {row[0] for row in rows}
    for row in rows:
        children.setdefault(row[2] if row[2] in ids else None, []).append(row)
    stack = [(row, "", True, True) for row in reversed(children.get(None, []))]
    while stack:
        row, indent, last, top = stack.pop()
        score = "-" if row[7] is None else f"{row[7]:.6g}"
        mark = ("*" if row[0] == best else "") + ("E" if row[0] in elites else "")
        branch = "" if top else ("`-- " if last else "|-- ")
        yield f"{indent}{branch}{row[0]}  {row[6]:<10} {score:>10} {mark}".rstrip()
        kids = children.get(row[0], [])
        if depth is not None and row[4] >= depth:
            if kids:
                yield f"{indent}{'    ' if last or top else '|   '}... {len(kids)} more below"
            continue
        child_indent = indent + ("" if top else ("    " if last else "|   "))
        for i, kid in reversed(list(enumerate(kids))):
            stack.append((kid, child_indent, i == len(kids) - 1, False))
