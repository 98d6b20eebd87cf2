"""Run an OpenEvolve ``evaluator.py`` inside the sandbox and write cambrian's result.

cambrian copies this file into each work dir as ``.cambrian_runner.py``; the evaluator
is imported in the sandbox, never in cambrian's own process. OpenEvolve evaluators load
the program in their own process, so inside cambrian's sandbox (``$CAMBRIAN_RUN`` set)
the evaluator runs in the inner tier with the candidate (``--inner``): there it cannot
reach cambrian's result file, the private files or anything that outlives it; this
process reads back its metrics and writes the result. Standard library only: it runs
under whatever Python the sandbox has.

Usage: ``python .cambrian_runner.py --evaluator evaluator.py --program initial_program.py
[--stage N [--gate]] [--features complexity,score]``. ``--stage N`` calls
``evaluate_stageN`` alone: cambrian runs OpenEvolve's cascade as its own stages.
``--cascade 0.5,0.75,0.9`` (configs written before stages) runs the whole cascade here.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

MAX_INNER_BYTES = 1_000_000


@dataclasses.dataclass
class EvaluationResult:
    """Stand-in for ``openevolve.evaluation_result.EvaluationResult`` when not installed."""

    metrics: dict[str, Any]
    artifacts: dict[str, Any] = dataclasses.field(default_factory=dict)


def _install_shim() -> None:
    """Make ``from openevolve.evaluation_result import EvaluationResult`` work without it."""
    try:
        import openevolve.evaluation_result  # noqa: F401
    except ImportError:
        package = types.ModuleType("openevolve")
        package.__path__ = []
        module = types.ModuleType("openevolve.evaluation_result")
        module.EvaluationResult = EvaluationResult
        package.evaluation_result = module
        sys.modules.setdefault("openevolve", package)
        sys.modules["openevolve.evaluation_result"] = module


def _load(path: Path) -> types.ModuleType:
    """Import the user's evaluator from its file."""
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("evaluator", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["evaluator"] = module
    spec.loader.exec_module(module)
    return module


def _plain(value: Any) -> Any:
    """A JSON-safe copy of ``value`` (numpy scalars become numbers, unknowns text)."""
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        try:
            return _plain(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def _split(result: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Metrics and artifacts of a dict or an ``EvaluationResult``-like object."""
    if isinstance(result, dict):
        return dict(result), {}
    if hasattr(result, "metrics"):
        return dict(result.metrics), dict(getattr(result, "artifacts", None) or {})
    raise SystemExit(f"evaluate() returned {type(result).__name__}, not a dict of metrics")


def _numeric(value: Any) -> bool:
    """Whether ``value`` is a finite number (booleans excluded)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def fitness(metrics: dict[str, Any], features: list[str]) -> float:
    """OpenEvolve's fitness: ``combined_score``, else the mean of numeric non-feature metrics."""
    if _numeric(metrics.get("combined_score")):
        return float(metrics["combined_score"])
    values = [float(v) for k, v in metrics.items() if k not in features and _numeric(v)]
    return sum(values) / len(values) if values else 0.0


def gate_score(metrics: dict[str, Any]) -> float:
    """OpenEvolve's threshold check: ``combined_score``, else the mean of numeric metrics.

    Unlike ``fitness``, feature dimensions count and ``error`` does not.
    """
    if _numeric(metrics.get("combined_score")):
        return float(metrics["combined_score"])
    values = [float(v) for k, v in metrics.items() if k != "error" and _numeric(v)]
    return sum(values) / len(values) if values else 0.0


def _stage(module: Any, program: str, stage: int) -> Any:
    """The result of ``evaluate_stage<stage>`` alone."""
    step = getattr(module, f"evaluate_stage{stage}", None)
    if step is None:
        raise SystemExit(f"the evaluator has no evaluate_stage{stage}(program_path)")
    return step(program)


def _cascade(module: Any, program: str, thresholds: list[float]) -> tuple[Any, str]:
    """Run evaluate_stage1/2/3 as OpenEvolve does; the merged result and a note."""
    metrics, artifacts = _split(module.evaluate_stage1(program))
    for stage in (2, 3):
        threshold = thresholds[stage - 2] if len(thresholds) > stage - 2 else None
        score = gate_score(metrics)
        if threshold is not None and score < threshold:
            note = f"cascade stopped after stage {stage - 1}: {score:.6g} < {threshold:g}"
            return EvaluationResult(metrics, artifacts), note
        step = getattr(module, f"evaluate_stage{stage}", None)
        if step is None:
            break
        more, more_artifacts = _split(step(program))
        metrics.update(more)
        artifacts.update(more_artifacts)
    return EvaluationResult(metrics, artifacts), ""


def _features(metrics: dict[str, Any], names: list[str], program: Path) -> dict[str, float]:
    """MAP-Elites descriptors: the named metrics; ``complexity`` defaults to code length."""
    found = {k: float(metrics[k]) for k in names if _numeric(metrics.get(k))}
    if "complexity" in names and "complexity" not in found:
        found["complexity"] = float(len(program.read_text(errors="replace")))
    return found


def _artifact_text(value: Any) -> str:
    """An artifact as feedback text (bytes decoded, objects as JSON)."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else json.dumps(_plain(value))


def _evaluate(args: argparse.Namespace, program: Path) -> tuple[Any, Any, str]:
    """Import the evaluator and run it: its metrics, artifacts and a cascade note."""
    _install_shim()
    module = _load(Path(args.evaluator).resolve())
    note = ""
    if args.stage:
        result = _stage(module, str(program), args.stage)
    elif args.cascade and hasattr(module, "evaluate_stage1"):
        thresholds = [float(t) for t in args.cascade.split(",") if t.strip()]
        result, note = _cascade(module, str(program), thresholds)
    else:
        result = module.evaluate(str(program))
    metrics, artifacts = _split(result)
    return metrics, artifacts, note


def _inner(args: argparse.Namespace, program: Path) -> int:
    """The inner tier's part: evaluate, write the raw outcome as JSON to ``--out``."""
    metrics, artifacts, note = _evaluate(args, program)
    feedback = {k: _artifact_text(v) for k, v in artifacts.items()}
    outcome = {"metrics": _plain(metrics), "artifacts": feedback, "note": note}
    Path(args.out).write_text(json.dumps(outcome))
    return 0


def _read_outcome(path: Path) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The inner part's outcome: a regular file, no link followed, bounded."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        raise SystemExit("the evaluator wrote no result (see its output above)") from None
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_INNER_BYTES + 1)
    try:
        outcome = json.loads(data) if len(data) <= MAX_INNER_BYTES else None
    except ValueError:
        outcome = None
    if not isinstance(outcome, dict) or not isinstance(outcome.get("metrics"), dict):
        raise SystemExit("the evaluator's outcome is not a JSON object with metrics")
    artifacts = outcome.get("artifacts") if isinstance(outcome.get("artifacts"), dict) else {}
    return outcome["metrics"], artifacts, str(outcome.get("note") or "")


def _run_inner(argv: list[str], launcher: list[str]) -> tuple[Any, Any, str]:
    """Run this script's ``--inner`` part through the launcher; its outcome."""
    folder = Path(tempfile.mkdtemp(prefix=".cambrian-openevolve-", dir="."))
    try:
        folder.chmod(0o777)  # the inner tier runs as another uid
        out = folder / "outcome.json"
        command = [*launcher, sys.executable, __file__, "--inner", "--out", str(out), *argv]
        done = subprocess.run(command, check=False)
        if done.returncode != 0:
            raise SystemExit(f"the evaluator exited with code {done.returncode}")
        metrics, artifacts, note = _read_outcome(out)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return metrics, artifacts, note


def main(argv: list[str] | None = None) -> int:
    """Evaluate the program and write the result JSON to ``$CAMBRIAN_RESULT``."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluator", default="evaluator.py")
    parser.add_argument("--program", required=True)
    parser.add_argument("--stage", type=int, default=0, help="run evaluate_stageN alone")
    parser.add_argument("--gate", action="store_true", help="score as the threshold check")
    parser.add_argument("--cascade", default="", help="comma-separated stage thresholds")
    parser.add_argument("--features", default="", help="comma-separated feature dimensions")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    program = Path(args.program).resolve()
    if args.inner:
        return _inner(args, program)
    launcher = shlex.split(os.environ.get("CAMBRIAN_RUN", ""))
    if launcher:
        metrics, artifacts, note = _run_inner(argv, launcher)
        feedback = dict(artifacts)
    else:
        metrics, raw, note = _evaluate(args, program)
        feedback = {k: _artifact_text(v) for k, v in raw.items()}
    names = [n for n in args.features.split(",") if n]
    if note:
        feedback["cascade"] = note
    out = {
        "score": gate_score(metrics) if args.gate else fitness(metrics, names),
        "metrics": _plain(metrics),
        "features": _features(metrics, names, program),
        "artifacts": feedback,
    }
    text = json.dumps(out)
    target = os.environ.get("CAMBRIAN_RESULT")
    if target:
        Path(target).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
