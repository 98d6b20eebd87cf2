"""Run an OpenEvolve ``evaluator.py`` inside the sandbox and write cambrian's result.

cambrian copies this file into each work dir as ``.cambrian_runner.py``; the evaluator
is imported here, in the sandboxed process, never in cambrian's own. Standard library
only: it runs under whatever Python the sandbox has.

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
import sys
import types
from pathlib import Path
from typing import Any


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


def main(argv: list[str] | None = None) -> int:
    """Evaluate the program and write the result JSON to ``$CAMBRIAN_RESULT``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluator", default="evaluator.py")
    parser.add_argument("--program", required=True)
    parser.add_argument("--stage", type=int, default=0, help="run evaluate_stageN alone")
    parser.add_argument("--gate", action="store_true", help="score as the threshold check")
    parser.add_argument("--cascade", default="", help="comma-separated stage thresholds")
    parser.add_argument("--features", default="", help="comma-separated feature dimensions")
    args = parser.parse_args(argv)
    _install_shim()
    program = Path(args.program).resolve()
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
    names = [n for n in args.features.split(",") if n]
    feedback = {k: _artifact_text(v) for k, v in artifacts.items()}
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
