"""``CompatEvaluator``: puts a foreign format's runner script into each work dir."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files as package_files
from pathlib import Path

from cambrian.evaluators._command import CommandEvaluator
from cambrian.types import Evaluation

#: Name of the runner script inside each work dir (read-only, hash-checked).
RUNNER_FILE = ".cambrian_runner.py"
#: Metrics key holding values that are stored but never shown to the LLM.
PRIVATE_METRICS = "_private"
RUNNERS = {"openevolve": "openevolve_runner.py", "shinka": "shinka_runner.py"}


def runner_source(adapter: str) -> bytes:
    """The runner script of ``adapter`` (``openevolve`` or ``shinka``), as bytes.

    Raises:
        ValueError: ``adapter`` names no known format.
    """
    if adapter not in RUNNERS:
        raise ValueError(f"adapter: unknown format {adapter!r}; use one of {sorted(RUNNERS)}")
    return package_files(__package__).joinpath("runners", RUNNERS[adapter]).read_bytes()


class CompatEvaluator:
    """Evaluates like ``CommandEvaluator``, with the format's runner in the work dir.

    Copying the runner into the work dir (rather than calling it from the installed
    package) makes it reachable from every sandbox: bubblewrap, rlimits or a container
    that sees nothing of the host but the work dir. The runner is protected like the
    evaluator's own files, so a candidate cannot rewrite how it is scored.

    Args:
        adapter: The foreign format (``openevolve`` or ``shinka``).
        inner: The command evaluator that runs ``evaluator.command``.
    """

    def __init__(self, adapter: str, inner: CommandEvaluator) -> None:
        self._source = runner_source(adapter)
        self._inner = inner

    def evaluate(self, workdir: Path, protected: Sequence[str] = ()) -> Evaluation:
        """Write the runner into ``workdir``, then evaluate the candidate checked out there."""
        runner = Path(workdir) / RUNNER_FILE
        runner.unlink(missing_ok=True)
        runner.write_bytes(self._source)
        return self._inner.evaluate(workdir, (*protected, RUNNER_FILE))
