"""ShinkaEvolve task folders: ``initial.<ext>`` and ``evaluate.py`` (``--results_dir``)."""

from __future__ import annotations

from pathlib import Path

from cambrian.evaluators.compat._foreign import (
    ForeignTask,
    find_initial,
    requirements_note,
    runner_command,
)

EVALUATE = "evaluate.py"


def detect(task_dir: Path) -> ForeignTask | None:
    """Recognise a ShinkaEvolve task and return its cambrian config, else None.

    The evaluator must take ``--results_dir`` (ShinkaEvolve's contract), so a plain
    ``evaluate.py`` beside an ``initial.py`` is not mistaken for one.

    Args:
        task_dir: The task folder (it has no cambrian config).
    """
    evaluate = task_dir / EVALUATE
    if not evaluate.is_file() or "results_dir" not in evaluate.read_text(errors="replace"):
        return None
    program = find_initial(task_dir, "initial")
    if program is None:
        return None
    config = {
        "task": {"editable": [program]},
        "evaluator": {
            "adapter": "shinka",
            "command": runner_command("--evaluate", EVALUATE, "--program", program),
        },
    }
    return ForeignTask("shinka", config, notes=requirements_note(task_dir))
