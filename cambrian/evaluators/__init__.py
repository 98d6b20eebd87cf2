"""The evaluator contract: a command that prints or writes one JSON result object."""

from cambrian.evaluators._command import RESULT_FILE, CommandEvaluator
from cambrian.evaluators._result import ResultError, parse_result

__all__ = ["RESULT_FILE", "CommandEvaluator", "ResultError", "parse_result"]
