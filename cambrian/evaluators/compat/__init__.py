"""Run task folders written for OpenEvolve and ShinkaEvolve, unchanged.

Detection maps a foreign folder to a cambrian config whose evaluator command calls a
small runner script. The runner is copied into each work dir and runs inside the
sandbox, where it imports (OpenEvolve) or calls (ShinkaEvolve) the user's evaluator and
writes cambrian's result JSON; the user's code never enters cambrian's own process.
"""

from cambrian.evaluators.compat._detect import FORMATS, detect_task
from cambrian.evaluators.compat._evaluator import (
    PRIVATE_METRICS,
    RUNNER_FILE,
    CompatEvaluator,
    runner_source,
)
from cambrian.evaluators.compat._foreign import ForeignTask

__all__ = [
    "FORMATS",
    "PRIVATE_METRICS",
    "RUNNER_FILE",
    "CompatEvaluator",
    "ForeignTask",
    "detect_task",
    "runner_source",
]
