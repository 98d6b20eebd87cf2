"""Run the evaluator command, or each stage of a cascade, on one candidate in a sandbox.

The result file lives in a folder of its own outside the work dir, which the sandbox
lets the evaluator write and candidate code never reach; it is read without following
links, as a regular file, and no further than the size bound.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from cambrian.config import EvaluatorConfig, StageConfig
from cambrian.errors import ConfigError
from cambrian.evaluators._cascade import TAIL_CHARS, Cascade
from cambrian.evaluators._result import (
    MAX_CHARS,
    ResultError,
    find_result_text,
    parse_result,
    to_evaluation,
)
from cambrian.types import EvalStatus, Evaluation, Limits, RunResult, Sandbox

#: Prefix of each stage's result folder (in the controller's temporary folder).
RESULT_PREFIX = "cambrian-result-"
RESULT_NAME = "result.json"
NOT_A_FILE = "(not a regular file)"
_MODULE_SUFFIXES = (".py", ".pyc", ".pyw", ".so", ".pyd")


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


def _read_head(path: Path) -> str | None:
    """The result file's text, read no further than one character past ``MAX_CHARS``.

    The file is opened without following a link and must be a regular file; anything
    else fails with a reason that holds none of its bytes. None when there is no file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        what = "a symbolic link" if exc.errno == errno.ELOOP else f"unreadable ({exc.strerror})"
        raise ResultError(f"result file is {what}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ResultError("result file is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(4 * (MAX_CHARS + 1))
    finally:
        os.close(fd)
    return data.decode("utf-8", errors="replace")[: MAX_CHARS + 1]


@lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A path glob (``*``, ``?``, ``**``) as a regex over posix paths."""
    out, i = [], 0
    pattern = pattern.strip().removeprefix("./")
    while i < len(pattern):
        for token, regex in (("**/", "(?:.*/)?"), ("**", ".*"), ("*", "[^/]*"), ("?", "[^/]")):
            if pattern.startswith(token, i):
                out.append(regex)
                i += len(token)
                break
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def private_paths(workdir: Path, globs: Iterable[str]) -> list[str]:
    """The work dir's files and folders matching ``globs`` (``evaluator.private``).

    A folder is private as a whole when a glob names it, or names all of it
    (``hidden_tests/**``); its contents are then not listed one by one.
    """
    regexes = [_glob_regex(g) for g in globs]
    whole = [_glob_regex(g[:-3]) for g in globs if g.strip().endswith("/**")]
    found: list[str] = []
    for parent, dirs, files in os.walk(workdir):
        rel_parent = os.path.relpath(parent, workdir)
        for name in sorted(dirs):
            rel = name if rel_parent == "." else f"{rel_parent}/{name}"
            if name == ".git" or any(r.match(rel) for r in regexes + whole):
                dirs.remove(name)
                found += [rel] if name != ".git" else []
        for name in sorted(files):
            rel = name if rel_parent == "." else f"{rel_parent}/{name}"
            if any(r.match(rel) for r in regexes):
                found.append(rel)
    return found


def _files_under(workdir: Path, paths: Sequence[str]) -> list[str]:
    """``paths``, with each folder replaced by the files inside it (for the digest)."""
    files: list[str] = []
    for rel in paths:
        top = workdir / rel
        if top.is_dir() and not top.is_symlink():
            for parent, _, names in os.walk(top):
                files += [os.path.relpath(os.path.join(parent, n), workdir) for n in names]
        else:
            files.append(rel)
    return files


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
        if config.warm and not callable(getattr(sandbox, "call", None)):
            raise ConfigError(
                f"evaluator.python (warm function mode) needs the process backend; the "
                f"{sandbox.name} backend runs evaluator.command only"
            )
        self._config = config
        self._sandbox = sandbox
        self._limits = limits
        self._maximize = config.direction == "maximize"

    def evaluate(self, workdir: Path, protected: Sequence[str] = ()) -> Evaluation:
        """Evaluate the candidate checked out in ``workdir``; failures come back as data."""
        workdir = Path(os.path.abspath(workdir))  # $CAMBRIAN_WORKDIR must not be relative
        private = private_paths(workdir, self._config.private)
        checked = sorted({*protected, *_files_under(workdir, private)})
        before = _digest(workdir, checked)
        modules = importable(workdir)
        stages = self._config.cascade()
        cascade = Cascade(len(stages), maximize=self._maximize)
        for number, stage in enumerate(stages, 1):
            limits = self._limits
            if stage.timeout_s is not None:
                limits = replace(limits, timeout_s=stage.timeout_s)
            files = _Files(tuple(protected), tuple(private), tuple(checked), before, modules)
            evaluation = self._run_stage(workdir, stage, number, limits, files)
            if not cascade.take(evaluation, stage.min_score):
                break
        return cascade.result()

    def _run_stage(
        self, workdir: Path, stage: StageConfig, number: int, limits: Limits, files: _Files
    ) -> Evaluation:
        """Run one stage's command (or warm function) and read its result object."""
        env = {"CAMBRIAN_WORKDIR": str(workdir), "CAMBRIAN_STAGE": str(number)}
        if stage.python:  # the function's return value comes back as stdout's last line
            run = self._sandbox.call(  # type: ignore[attr-defined]
                stage.python,
                workdir=workdir,
                limits=limits,
                env=env,
                readonly=files.protected,
                private=files.private,
                uses=self._config.worker_uses,
            )
            return self._judge(run, workdir, number, limits, files, None)
        command = stage.command
        # A fresh folder per stage, outside the work dir: the sandbox shows it to the
        # evaluator and hides it from candidate code.
        results = Path(tempfile.mkdtemp(prefix=RESULT_PREFIX)) if self._auto else None
        try:
            if results is not None:
                env["CAMBRIAN_RESULT"] = str(results / RESULT_NAME)
            run = self._sandbox.run(
                command,
                workdir=workdir,
                limits=limits,
                env=env,
                readonly=files.protected,
                private=files.private,
                result_dir=results,
            )
            return self._judge(run, workdir, number, limits, files, results)
        finally:
            if results is not None:
                shutil.rmtree(results, ignore_errors=True)

    def _judge(
        self,
        run: RunResult,
        workdir: Path,
        number: int,
        limits: Limits,
        files: _Files,
        results: Path | None,
    ) -> Evaluation:
        """The stage's evaluation: its failure, or the result object it wrote or printed."""
        tail, took = _tail(run), run.duration_s
        failure = _failure(run, limits, files.before, _digest(workdir, files.checked))
        if failure is not None:
            status, reason = failure
            return Evaluation(status, duration_s=took, reason=reason, output_tail=tail)
        created = sorted(importable(workdir) - files.modules)
        if created:  # a later import by the evaluator (or the next stage) would run it
            reason = f"candidate code created {created[0][:80]!r} in the work dir, where the "
            reason += "evaluator's Python imports from"
            return Evaluation(EvalStatus.ERROR, duration_s=took, reason=reason, output_tail=tail)
        try:
            file_text = _read_head(results / RESULT_NAME) if results is not None else None
            parsed = parse_result(find_result_text(file_text, run.stdout))
        except ResultError as exc:
            return Evaluation(EvalStatus.ERROR, duration_s=took, reason=str(exc), output_tail=tail)
        return to_evaluation(parsed, duration_s=took, output_tail=tail, stage=number)

    @property
    def _auto(self) -> bool:
        """Whether the evaluator may write a result file (``evaluator.result = "auto"``)."""
        return self._config.result == "auto"


@dataclass(frozen=True)
class _Files:
    """The work dir's paths one evaluation guards: read-only, private, hash-checked."""

    protected: tuple[str, ...]
    private: tuple[str, ...]
    checked: tuple[str, ...]
    before: dict[str, str]
    modules: frozenset[str]


def importable(workdir: Path) -> frozenset[str]:
    """Names in the work dir's top folder that Python would import as modules.

    The evaluator's script folder comes first on its ``sys.path``: a module file, or a
    package folder with an ``__init__``, put there while candidate code ran would be
    imported by the evaluator in place of the standard library's or its own.
    """
    names = set()
    try:
        entries = list(os.scandir(workdir))
    except OSError:
        return frozenset()
    for entry in entries:
        if entry.name.endswith(_MODULE_SUFFIXES):
            names.add(entry.name)
        elif entry.is_dir(follow_symlinks=False) and any(
            os.path.lexists(os.path.join(entry.path, f"__init__{suffix}"))
            for suffix in _MODULE_SUFFIXES
        ):
            names.add(entry.name + "/")
    return frozenset(names)


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
