"""OpenEvolve evaluator: ``evaluate(program_path)`` plus a two-stage cascade."""

import importlib.util
import math

from openevolve.evaluation_result import EvaluationResult

TARGET = (3.0, 1.0)


def _point(program_path):
    spec = importlib.util.spec_from_file_location("program", program_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.solve()


def evaluate_stage1(program_path):
    """Cheap check: the program returns two finite numbers left of x = 10."""
    x, y = _point(program_path)
    ok = all(isinstance(v, int | float) and math.isfinite(v) for v in (x, y)) and x < 10
    return {"valid": 1.0 if ok else 0.0}


def evaluate_stage2(program_path):
    """Full evaluation; also what ``evaluate`` returns."""
    return evaluate(program_path)


def evaluate(program_path):
    x, y = _point(program_path)
    distance = math.hypot(x - TARGET[0], y - TARGET[1])
    return EvaluationResult(
        metrics={"closeness": 1.0 / (1.0 + distance), "valid": 1.0, "spread": abs(x - y)},
        artifacts={"hint": f"the point is {distance:.3f} away from the target"},
    )
