"""Parse the evaluator's one JSON object into an ``Evaluation``."""

from __future__ import annotations

import json
import math
from typing import Any

from cambrian.types import EvalStatus, Evaluation


class ResultError(ValueError):
    """The evaluator's output is not a valid result object."""


def _number(value: Any, where: str) -> float:
    """Return ``value`` as a finite float or raise ``ResultError``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ResultError(f"{where} must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ResultError(f"{where} must be finite, got {number}")
    return number


def _mapping(data: dict[str, Any], key: str) -> dict[str, Any]:
    """Return ``data[key]`` as a dict (empty when absent)."""
    value = data.get(key, {})
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ResultError(f"'{key}' must be an object, got {type(value).__name__}")
    return value


def find_result_text(file_text: str | None, stdout: str) -> str:
    """Return the result JSON: the result file's text, else the last non-empty stdout line."""
    if file_text is not None and file_text.strip():
        return file_text
    for line in reversed(stdout.splitlines()):
        if line.strip():
            return line.strip()
    raise ResultError("no result: write a JSON object to $CAMBRIAN_RESULT or print it last")


def parse_result(text: str) -> dict[str, Any]:
    """Validate one result object: numeric ``score``; optional metrics, features, artifacts.

    Raises:
        ResultError: with a one-line reason, when the object is malformed.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultError(f"malformed result JSON: {exc.msg} in {text[:80]!r}") from None
    if not isinstance(data, dict):
        raise ResultError(f"result must be a JSON object, got {type(data).__name__}")
    if "score" not in data:
        raise ResultError("result has no 'score'")
    features = {k: _number(v, f"features.{k}") for k, v in _mapping(data, "features").items()}
    artifacts = {
        k: v if isinstance(v, str) else json.dumps(v)
        for k, v in _mapping(data, "artifacts").items()
    }
    return {
        "score": _number(data["score"], "score"),
        "metrics": _mapping(data, "metrics"),
        "features": features,
        "artifacts": artifacts,
    }


def to_evaluation(
    parsed: dict[str, Any], *, duration_s: float, output_tail: str, stage: int = 1
) -> Evaluation:
    """Build a successful ``Evaluation`` from a parsed result."""
    return Evaluation(
        status=EvalStatus.OK,
        score=parsed["score"],
        metrics=parsed["metrics"],
        features=parsed["features"],
        artifacts=parsed["artifacts"],
        stage=stage,
        duration_s=duration_s,
        output_tail=output_tail,
    )
