"""The evaluator contract: a command that prints or writes one JSON result object."""

from cambrian.evaluators._command import RESULT_PREFIX, CommandEvaluator
from cambrian.evaluators._result import ResultError, parse_result

__all__ = ["RESULT_PREFIX", "CommandEvaluator", "ResultError", "parse_result"]
