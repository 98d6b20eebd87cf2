"""Parse the evaluator's one JSON object into an ``Evaluation``.

The object comes from code we do not trust, so its size is bounded before it is parsed
and its shape after: a result beyond a bound fails its candidate with a one-line reason.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from cambrian.types import EvalStatus, Evaluation

#: Most characters of a result's JSON text (a longer result file is read no further).
MAX_CHARS = 1_000_000
#: Deepest nesting of objects and arrays (far above any real result; json recurses).
MAX_DEPTH = 32
#: Most entries in each of ``metrics``, ``features`` and ``artifacts``.
MAX_ENTRIES = 1000
#: Longest name of a metric, feature or artifact.
MAX_KEY = 200
#: Longest metric value, as JSON text.
MAX_VALUE = 10_000
# A string token (running to the end of the text when unclosed) or one bracket; each
# character is read once, so a hostile text cannot make the depth check slow.
_TOKEN = re.compile(r'"(?:[^"\\]++|\\.?)*+"?|[\[\]{}]', re.DOTALL)


class ResultError(ValueError):
    """The evaluator's output is not a valid result object."""


def _number(value: Any, where: str) -> float:
    """Return ``value`` as a finite float or raise ``ResultError``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ResultError(f"{where} must be a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        raise ResultError(f"{where} is too large for a float") from None
    if not math.isfinite(number):
        raise ResultError(f"{where} must be finite, got {number}")
    return number


def _mapping(data: dict[str, Any], key: str) -> dict[str, Any]:
    """Return ``data[key]`` as a dict (empty when absent), within the entry and name bounds."""
    value = data.get(key, {})
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ResultError(f"'{key}' must be an object, got {type(value).__name__}")
    if len(value) > MAX_ENTRIES:
        raise ResultError(f"'{key}' has {len(value)} entries, at most {MAX_ENTRIES}")
    for name in value:
        if len(name) > MAX_KEY:
            raise ResultError(f"'{key}' has a name longer than {MAX_KEY} characters")
    return value


def _metrics(data: dict[str, Any]) -> dict[str, Any]:
    """The ``metrics`` object: each value short, and a number only where a float holds it."""
    metrics = _mapping(data, "metrics")
    for name, value in metrics.items():
        if isinstance(value, int) and not isinstance(value, bool):
            _number(value, f"metrics.{name}")
        elif len(json.dumps(value)) > MAX_VALUE:
            raise ResultError(f"metrics.{name} is longer than {MAX_VALUE} characters as JSON")
    return metrics


def _too_deep(text: str) -> bool:
    """Whether ``text`` nests JSON objects and arrays deeper than ``MAX_DEPTH``."""
    depth = 0
    for token in _TOKEN.finditer(text):
        bracket = token.group()
        if bracket in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif bracket in ("]", "}"):
            depth -= 1
    return False


#: How ``$CAMBRIAN_RUN`` marks candidate output that reaches the evaluator's stdout.
CANDIDATE_MARK = "[candidate] "


def find_result_text(file_text: str | None, stdout: str) -> str:
    r"""Return the result JSON: the result file's text, else the last non-empty stdout line.

    Lines are split at ``\n`` only, and a line the candidate runner marked as candidate
    output (``CANDIDATE_MARK``) never counts, whatever it holds after a ``\r``.
    """
    if file_text is not None and file_text.strip():
        return file_text
    for line in reversed(stdout.split("\n")):
        if line.strip() and not line.startswith(CANDIDATE_MARK):
            return line.strip()
    raise ResultError("no result: write a JSON object to $CAMBRIAN_RESULT or print it last")


def parse_result(text: str) -> dict[str, Any]:
    """Validate one result object: numeric ``score``; optional metrics, features, artifacts.

    Raises:
        ResultError: with a one-line reason, when the object is malformed or beyond a
            bound (``MAX_CHARS``, ``MAX_DEPTH``, ``MAX_ENTRIES``, ``MAX_KEY``, ``MAX_VALUE``).
    """
    if len(text) > MAX_CHARS:
        raise ResultError(f"result is larger than {MAX_CHARS} characters")
    if _too_deep(text):
        raise ResultError(f"result JSON is nested deeper than {MAX_DEPTH} levels")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultError(f"malformed result JSON: {exc.msg} in {text[:80]!r}") from None
    except ValueError:  # the one other failure: an integer of too many digits to convert
        raise ResultError("malformed result JSON: an integer has too many digits") from None
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
        "metrics": _metrics(data),
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
