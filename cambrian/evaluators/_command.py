"""Run the evaluator command, or each stage of a cascade, on one candidate in a sandbox."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from cambrian.config import EvaluatorConfig
from cambrian.evaluators._cascade import TAIL_CHARS, Cascade
from cambrian.evaluators._result import ResultError, find_result_text, parse_result, to_evaluation
from cambrian.types import EvalStatus, Evaluation, Limits, RunResult, Sandbox

RESULT_PREFIX = ".cambrian-result-"
NOT_A_FILE = "(not a regular file)"


def _digest(workdir: Path, paths: Sequence[str]) -> dict[str, str]:
    """Hash each protected path, so tampering can be detected afterwards.

    A path that is not a regular file (a folder or a link put in its place) gets a marker
    instead of a hash, so replacing a file by anything else is a change too.
    """
    digests = {}
    for rel in paths:
        path = workdir / rel
        if path.is_file() and not path.is_symlink():
            digests[rel] = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
        elif path.exists() or path.is_symlink():
            digests[rel] = NOT_A_FILE
    return digests


def _tail(run: RunResult) -> str:
    """The last ``TAIL_CHARS`` of stdout and stderr together."""
    text = run.stdout
    if run.stderr.strip():
        text = f"{text}\n[stderr]\n{run.stderr}" if text.strip() else run.stderr
    return text[-TAIL_CHARS:]


def _last_line(run: RunResult) -> str:
    """': <last non-empty line of stderr, else stdout>', capped, or '' when both are empty."""
    for text in (run.stderr, run.stdout):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return f": {lines[-1][:160]}"
    return ""


class CommandEvaluator:
    """Runs the evaluator command (or each stage of a cascade) in a candidate's work dir.

    The evaluator never imports candidate code: it is a process contract. Protected
    files (the evaluator's own) are mounted read-only where the sandbox can, and checked
    for tampering after every stage everywhere. With ``evaluator.stages`` the stages run
    in order; a stage that fails, or scores worse than its ``min_score``, ends the
    cascade there (``Evaluation.stage`` says which).

    Args:
        config: The ``[evaluator]`` section.
        sandbox: Where the command runs.
        limits: Resource limits for each run (a stage's ``timeout_s`` replaces the timeout).
    """

    def __init__(self, config: EvaluatorConfig, sandbox: Sandbox, limits: Limits) -> None:
        self._config = config
        self._sandbox = sandbox
        self._limits = limits
        self._maximize = config.direction == "maximize"

    def evaluate(self, workdir: Path, protected: Sequence[str] = ()) -> Evaluation:
        """Evaluate the candidate checked out in ``workdir``; failures come back as data."""
        workdir = Path(os.path.abspath(workdir))  # $CAMBRIAN_RESULT must not be relative
        before = _digest(workdir, protected)
        stages = self._config.cascade()
        cascade = Cascade(len(stages), maximize=self._maximize)
        for number, stage in enumerate(stages, 1):
            limits = self._limits
            if stage.timeout_s is not None:
                limits = replace(limits, timeout_s=stage.timeout_s)
            evaluation = self._run_stage(workdir, stage.command, number, limits, protected, before)
            if not cascade.take(evaluation, stage.min_score):
                break
        return cascade.result()

    def _run_stage(
        self,
        workdir: Path,
        command: str,
        number: int,
        limits: Limits,
        protected: Sequence[str],
        before: dict[str, str],
    ) -> Evaluation:
        """Run one stage's command and read its result object."""
        # A fresh, unguessable name: candidate code cannot pre-write the result file.
        result_path = workdir / f"{RESULT_PREFIX}{secrets.token_hex(8)}.json"
        env = {"CAMBRIAN_WORKDIR": str(workdir), "CAMBRIAN_STAGE": str(number)}
        if self._config.result == "auto":
            env["CAMBRIAN_RESULT"] = str(result_path)
        run = self._sandbox.run(
            command, workdir=workdir, limits=limits, env=env, readonly=tuple(protected)
        )
        tail = _tail(run)
        failure = _failure(run, limits, before, _digest(workdir, protected))
        if failure is not None:
            status, reason = failure
            return Evaluation(status, duration_s=run.duration_s, reason=reason, output_tail=tail)
        try:
            readable = self._config.result == "auto" and result_path.is_file()
            file_text = result_path.read_text(errors="replace") if readable else None
            parsed = parse_result(find_result_text(file_text, run.stdout))
        except ResultError as exc:
            return Evaluation(
                EvalStatus.ERROR, duration_s=run.duration_s, reason=str(exc), output_tail=tail
            )
        finally:
            result_path.unlink(missing_ok=True)  # the next stage writes a file of its own
        return to_evaluation(parsed, duration_s=run.duration_s, output_tail=tail, stage=number)


def _failure(
    run: RunResult, limits: Limits, before: dict[str, str], after: dict[str, str]
) -> tuple[EvalStatus, str] | None:
    """Classify a failed run, or None when the command succeeded."""
    if run.lost:
        return EvalStatus.ERROR, f"lost: {run.lost}"
    if run.timed_out:
        return EvalStatus.TIMEOUT, f"timeout: killed after {limits.timeout_s:g}s"
    if run.oom_killed:
        return EvalStatus.OOM, f"oom: out of memory (limit {limits.memory_mb} MB)"
    changed = sorted(p for p in before if after.get(p) != before[p])
    if changed:
        return EvalStatus.ERROR, f"candidate modified evaluator file {changed[0]}"
    if run.returncode != 0:
        return EvalStatus.ERROR, f"evaluator exited with code {run.returncode}{_last_line(run)}"
    return None
