"""``cambrian best --pareto``: the non-dominated programs over the configured objectives."""

from __future__ import annotations

from typing import Any

from rich.console import Console


def print_pareto(archive: Any, out: Console) -> int:
    """Print one line per non-dominated program; return how many there are."""
    front = archive.pareto()
    for program, evaluation in front:
        metrics = "  ".join(f"{k}={v}" for k, v in sorted(dict(evaluation.metrics).items()))
        out.print(
            f"{program.id}  score {evaluation.score:.6g}  "
            f"generation {program.generation}  {metrics}",
            markup=False,
        )
    return len(front)
