"""Core dataclasses and Protocols shared by every room.

Rooms implement these Protocols structurally; they do not inherit from them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol


class ProgramStatus(StrEnum):
    """Where a program is in its life; every transition is committed to the archive."""

    PROPOSED = "proposed"  # committed to lineage, waiting for an evaluation slot
    EVALUATING = "evaluating"
    EVALUATED = "evaluated"  # evaluation finished with status ok
    FAILED = "failed"  # evaluation finished with an error, timeout or oom, or was stopped
    REJECTED = "rejected"  # never evaluated: bad edit, duplicate, outside editable files
    INTERRUPTED = "interrupted"  # evaluation cut short by Ctrl-C; re-evaluated on resume


class EvalStatus(StrEnum):
    """Outcome of one evaluation."""

    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    OOM = "oom"
    # A cascade stage scored worse than its min_score: the score is kept, no cell taken.
    STOPPED = "stopped"


class AddStatus(StrEnum):
    """What ``Archive.add`` did with a program."""

    NEW_CELL = "new_cell"  # the program is the first elite of its cell
    IMPROVED = "improved"  # the program replaced a worse elite
    NOT_ADDED = "not_added"  # it lost to the cell's elite, or its evaluation failed


@dataclass(frozen=True)
class Program:
    """One candidate: a commit in the run's lineage repository.

    Attributes:
        id: Short unique id (hex).
        parent_id: The parent program's id, or None for the initial program.
        island: Island index the program lives on.
        generation: Number of edits from the initial program.
        commit: Git commit sha in the lineage repository ("" when rejected before commit).
        tree: Git tree sha of the program's files, used to reject exact duplicates.
        files_changed: Paths changed relative to the parent.
        model: Name of the model that wrote it (None for the initial program).
        status: Lifecycle state.
        reason: Why it was rejected, failed or interrupted ("" otherwise).
        operator: The variation operator that asked for it (diff, region, rewrite,
            crossover; "" for the initial program).
        edit_kind: How the reply was applied (diff, region, functions, rewrite).
        templates: Name of the prompt template set used.
    """

    id: str
    parent_id: str | None
    island: int
    generation: int
    commit: str
    tree: str = ""
    files_changed: tuple[str, ...] = ()
    model: str | None = None
    status: ProgramStatus = ProgramStatus.PROPOSED
    reason: str = ""
    operator: str = ""
    edit_kind: str = ""
    templates: str = ""


@dataclass(frozen=True)
class Evaluation:
    """Result of running the evaluator on one program.

    Attributes:
        status: ok, error, timeout, oom, or stopped (by a cascade stage's min_score).
        score: The objective (None when the evaluation failed; the stopping stage's
            score when stopped).
        metrics: Numeric or textual metrics reported by the evaluator.
        features: MAP-Elites descriptors reported by the evaluator.
        artifacts: Text fed back to the LLM (e.g. ``feedback``).
        stage: Last evaluator stage reached (1-based; 1 without a cascade).
        duration_s: Wall time of the evaluator command(s).
        reason: Failure reason ("" when ok).
        output_tail: Tail of the evaluator's stdout and stderr.
    """

    status: EvalStatus
    score: float | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    features: Mapping[str, float] = field(default_factory=dict)
    artifacts: Mapping[str, Any] = field(default_factory=dict)
    stage: int = 1
    duration_s: float = 0.0
    reason: str = ""
    output_tail: str = ""

    @property
    def ok(self) -> bool:
        """Whether every stage succeeded and passed, producing a score that may take a cell."""
        return self.status is EvalStatus.OK and self.score is not None


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sandboxed command.

    Attributes:
        timeout_s: Wall-clock limit; the whole process tree is killed past it.
        memory_mb: Address-space / memory limit in MiB (None: no limit).
        cpus: CPU share (container backends); process backends derive CPU time from timeout.
        pids: Maximum number of processes (None: no limit).
        output_bytes: Cap on captured stdout and on stderr (the tail is kept).
        file_size_mb: Largest file the command may write, in MiB.
        network: Whether the command may reach the network.
    """

    timeout_s: float = 60.0
    memory_mb: int | None = 2048
    cpus: float | None = None
    pids: int | None = 256
    output_bytes: int = 256 * 1024
    file_size_mb: int = 256
    network: bool = False


@dataclass(frozen=True)
class RunResult:
    """What a sandbox reports about one command.

    Attributes:
        returncode: Exit status (negative for a signal; None if it never started).
        stdout: Captured stdout tail (decoded, at most ``Limits.output_bytes``).
        stderr: Captured stderr tail.
        timed_out: The wall-clock limit was hit and the process tree was killed.
        oom_killed: The command ran out of memory.
        duration_s: Wall time.
        lost: Why the backend lost the command (a cluster worker or node died), or "".
    """

    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    oom_killed: bool = False
    duration_s: float = 0.0
    lost: str = ""


class Sandbox(Protocol):
    """Where candidate code runs. Raises ``SandboxError`` only on infrastructure failure."""

    name: str

    def run(
        self,
        command: str,
        *,
        workdir: Path,
        limits: Limits,
        env: Mapping[str, str] | None = None,
        readonly: Sequence[str] = (),
        private: Sequence[str] = (),
        result_dir: Path | None = None,
    ) -> RunResult:
        """Run ``command`` (a shell line, the evaluator) in ``workdir`` with ``limits``.

        ``env`` adds variables on top of the scrubbed allowlist. ``readonly`` lists paths
        relative to ``workdir`` that the command must not modify. The command reaches
        candidate code through ``$CAMBRIAN_RUN`` (the inner tier), which never sees the
        ``private`` paths (relative to ``workdir``) nor ``result_dir`` (a folder outside
        ``workdir`` the command may write; its files are there afterwards).
        """
        ...

    def describe(self) -> str:
        """One line naming the isolation this backend gives."""
        ...

    def identity(self) -> dict[str, Any]:
        """What to record with the run for reproducibility (backend, isolation, image)."""
        ...

    def close(self) -> None:
        """Release every resource (containers, processes)."""
        ...


@dataclass(frozen=True)
class Completion:
    """One LLM reply with its accounting."""

    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0


class LLM(Protocol):
    """A chat model. Raises ``LLMError`` when it stays unreachable after retries."""

    name: str

    async def complete(
        self, messages: Sequence[Mapping[str, str]], *, model: str | None = None
    ) -> Completion:
        """Return the reply to ``messages`` (OpenAI chat format).

        ``model`` continues a conversation with the model that answered its last turn.
        """
        ...

    def errors_by_model(self) -> dict[str, dict[str, int]]:
        """Failed attempts so far (retried or final), per model, counted by class."""
        ...

    async def aclose(self) -> None:
        """Close the connections held for the running event loop (it may be used again)."""
        ...


class Archive(Protocol):
    """Stores programs and evaluations; keeps the MAP-Elites elites; samples parents."""

    def add(self, program: Program, evaluation: Evaluation) -> AddStatus:
        """Store ``evaluation`` for ``program`` and place it in its cell if it wins."""
        ...

    def sample_parent(self, island: int) -> Program | None:
        """Pick a parent among the island's elites (None when it has none yet)."""
        ...

    def sample_inspirations(self, parent: Program, n: int) -> list[Program]:
        """Pick up to ``n`` other elites to show beside the parent."""
        ...

    def best(self) -> tuple[Program, Evaluation] | None:
        """The best evaluated program and its evaluation."""
        ...

    def stats(self) -> dict[str, Any]:
        """Counts by status, best score, tokens and elapsed time."""
        ...
