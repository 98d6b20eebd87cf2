"""The evaluator contract: a command (or a cascade of stages) that prints or writes JSON."""

from cambrian.evaluators._cascade import Cascade
from cambrian.evaluators._command import RESULT_PREFIX, CommandEvaluator
from cambrian.evaluators._result import ResultError, parse_result

__all__ = ["RESULT_PREFIX", "Cascade", "CommandEvaluator", "ResultError", "parse_result"]
