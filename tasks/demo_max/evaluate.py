"""Evaluator for demo_max: the score is value(), which must be a number <= 1000.

value() runs in a child started through ``$CAMBRIAN_RUN`` (cambrian's inner tier for
candidate code); run by hand, without it, the child is a plain process.
"""

import json
import math
import os
import shlex
import subprocess
import sys

RUNNER = "import json, value; print(json.dumps(value.value()))"
CANDIDATE = shlex.split(os.environ.get("CAMBRIAN_RUN", ""))

argv = [*CANDIDATE, sys.executable, "-c", RUNNER]
run = subprocess.run(argv, capture_output=True, text=True, timeout=10)
if run.returncode != 0:
    print(run.stderr[-2000:], file=sys.stderr)
    sys.exit(1)
try:
    result = json.loads(run.stdout.strip().splitlines()[-1])
except (ValueError, IndexError):
    result = None
if isinstance(result, bool) or not isinstance(result, int | float) or not math.isfinite(result):
    score, feedback = 0.0, f"value() must return a number, got {run.stdout.strip()[:80]!r}"
elif result > 1000:
    score, feedback = 0.0, f"value() returned {result}, which is above the limit of 1000"
else:
    score, feedback = float(result), f"value() returned {result}; the limit is 1000"
print(
    json.dumps(
        {
            "score": score,
            "metrics": {"value": result if score else None},
            "artifacts": {"feedback": feedback},
        }
    )
)
