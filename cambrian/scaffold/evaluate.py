"""Evaluator: runs solve.py in a fresh process and prints one JSON result line.

Candidate code runs only in the child, started through $CAMBRIAN_RUN: cambrian's inner
tier, where it has its own uid and cannot reach this process, its output or the result.
Never import solve here. Run by hand ($CAMBRIAN_RUN unset), the child is a plain process.
"""

import json
import os
import shlex
import subprocess
import sys

CANDIDATE = shlex.split(os.environ.get("CAMBRIAN_RUN", ""))
CHECK = "import solve, json; print(json.dumps([solve.WIDTH, solve.HEIGHT, solve.area()]))"
argv = [*CANDIDATE, sys.executable, "-c", CHECK]
out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
if out.returncode != 0:
    print(out.stderr[-2000:], file=sys.stderr)
    sys.exit(1)
width, height, area = json.loads(out.stdout.strip().splitlines()[-1])
valid = 0 < width <= 1 and 0 < height <= 1 and abs(area - width * height) < 1e-9
feedback = "ok" if valid else "the rectangle must fit in the unit square and area() = WIDTH*HEIGHT"
print(
    json.dumps(
        {
            "score": area if valid else 0.0,
            "metrics": {"valid": int(valid), "width": width, "height": height},
            "artifacts": {"feedback": feedback},
        }
    )
)
