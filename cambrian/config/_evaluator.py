"""The ``[evaluator]`` section: a command, a warm function or a cascade of stages."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from cambrian.config._base import Section as _Section


class StageConfig(_Section):
    """One stage of a cascade (``[[evaluator.stages]]``): a command and its threshold."""

    command: str = Field(default="", description="Shell command of this stage.")
    python: str = Field(
        default="", description="FILE.py:FUNCTION run in a warm worker instead of a command."
    )
    min_score: float | None = Field(
        default=None,
        description="A score worse than this (in evaluator.direction) stops the candidate "
        "here: stored with its score, it takes no cell; unset: always go on.",
    )
    timeout_s: float | None = Field(
        default=None, gt=0, description="Wall-clock limit of this stage; unset: evaluator's."
    )


_TARGET = re.compile(r"[^:\s]+\.py:[A-Za-z_][A-Za-z0-9_]*")


def _check_target(where: str, command: str, python: str) -> None:
    """Refuse a command beside a function, and a function not named FILE.py:FUNCTION."""
    if command.strip() and python.strip():
        raise ValueError(f"{where}.command and {where}.python are both set: keep one")
    if python and not _TARGET.fullmatch(python):
        raise ValueError(
            f"{where}.python = {python!r} must name FILE.py:FUNCTION, e.g. evaluate.py:evaluate"
        )


class EvaluatorConfig(_Section):
    """The evaluator command (or cascade of stages) and how its score is read."""

    command: str = Field(default="", description="Shell command run in the candidate's work dir.")
    python: str = Field(
        default="",
        description="Function mode instead of command: FILE.py:FUNCTION, loaded once per warm "
        "worker and called with each candidate (process backend).",
    )
    worker_uses: int = Field(
        default=100, ge=1, description="Function mode: evaluations per worker before a fresh one."
    )
    stages: tuple[StageConfig, ...] = Field(
        default=(),
        description="A cascade instead of command: stages run in order, each may stop "
        "the candidate below its min_score; the last stage's result is the evaluation.",
    )
    timeout_s: float = Field(default=60.0, gt=0, description="Wall-clock limit per evaluation.")
    direction: Literal["maximize", "minimize"] = "maximize"
    result: Literal["auto", "stdout"] = Field(
        default="auto",
        description="Where the result JSON is read: auto (the $CAMBRIAN_RESULT file if "
        "written, else the last stdout line) or stdout only (no file a candidate could forge).",
    )
    protected: tuple[str, ...] = Field(
        default=(),
        description="Extra globs made read-only during evaluation; every non-editable "
        "file of the task is protected already.",
    )
    private: tuple[str, ...] = Field(
        default=(),
        description="Globs of task files (e.g. hidden_tests/**) the evaluator reads and "
        "candidate code never sees.",
    )
    adapter: Literal["none", "openevolve", "shinka"] = Field(
        default="none",
        description="Foreign task format: its runner script is put into each work dir as "
        ".cambrian_runner.py (read-only) for the command to call.",
    )

    @model_validator(mode="after")
    def _check_stages(self) -> EvaluatorConfig:
        _check_target("evaluator", self.command, self.python)
        if "stages" not in self.model_fields_set:
            return self
        if self.command.strip() or self.python.strip():
            raise ValueError(
                "evaluator.stages and evaluator.command (or python) are both set: keep one "
                "(command or python for one evaluation, stages for a cascade)"
            )
        if not self.stages:
            raise ValueError(
                "evaluator.stages is empty: add [[evaluator.stages]] entries with a command, "
                "or set evaluator.command instead"
            )
        for number, stage in enumerate(self.stages, 1):
            if not stage.command.strip() and not stage.python.strip():
                raise ValueError(
                    f"evaluator.stages[{number}] has an empty command: give every stage "
                    'the shell command it runs (or python = "FILE.py:FUNCTION")'
                )
            _check_target(f"evaluator.stages[{number}]", stage.command, stage.python)
        return self

    def cascade(self) -> tuple[StageConfig, ...]:
        """The stages to run: ``stages``, or ``command``/``python`` as the one stage."""
        return self.stages or (StageConfig(command=self.command, python=self.python),)

    @property
    def warm(self) -> bool:
        """Whether some stage runs in a warm worker (function mode)."""
        return any(stage.python for stage in self.cascade())
