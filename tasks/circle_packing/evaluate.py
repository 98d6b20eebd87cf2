"""Strict validator for circle packing: prints one JSON result line.

A packing is valid when it has exactly 26 circles with finite coordinates and positive
radii, every circle lies inside the unit square, and no two circles overlap. Both checks
allow a tolerance of 1e-9. The score is the sum of radii; an invalid packing scores 0
and the feedback names the first violation.

``pack()`` runs only in a child process started through ``$CAMBRIAN_RUN``: cambrian's
inner tier, where candidate code has its own uid and cannot reach this process or its
output. Run by hand (``$CAMBRIAN_RUN`` unset), the child is a plain process.
"""

import json
import math
import os
import shlex
import subprocess
import sys

N = 26
TOL = 1e-9
RUNNER = "import json, solve; print(json.dumps([list(map(float, c)) for c in solve.pack()]))"
CANDIDATE = shlex.split(os.environ.get("CAMBRIAN_RUN", ""))


def check(circles):
    if len(circles) != N:
        return f"expected {N} circles, got {len(circles)}"
    for k, c in enumerate(circles):
        if len(c) != 3 or not all(math.isfinite(v) for v in c):
            return f"circle {k} is not three finite numbers: {c}"
        x, y, r = c
        if r <= 0:
            return f"circle {k} has radius {r} <= 0"
        if x - r < -TOL or x + r > 1 + TOL or y - r < -TOL or y + r > 1 + TOL:
            return f"circle {k} at ({x:.4f}, {y:.4f}) r={r:.4f} leaves the unit square"
    for i in range(N):
        xi, yi, ri = circles[i]
        for j in range(i + 1, N):
            xj, yj, rj = circles[j]
            gap = math.hypot(xi - xj, yi - yj) - ri - rj
            if gap < -TOL:
                return f"circles {i} and {j} overlap by {-gap:.3g}"
    return ""


def main():
    argv = [*CANDIDATE, sys.executable, "-c", RUNNER]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=50)
    if run.returncode != 0:
        print(run.stderr[-3000:], file=sys.stderr)
        sys.exit(1)
    try:
        circles = json.loads(run.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        print(f"pack() output unreadable: {run.stdout[-500:]!r}", file=sys.stderr)
        sys.exit(1)
    problem = check(circles)
    radii = [c[2] for c in circles] if not problem else [0.0]
    total = sum(radii) if not problem else 0.0
    print(
        json.dumps(
            {
                "score": total,
                "metrics": {"valid": int(not problem), "sum_radii": total, "circles": len(circles)},
                "features": {"radius_spread": max(radii) - min(radii)},
                "artifacts": {"feedback": problem or f"valid packing, sum of radii {total:.6f}"},
            }
        )
    )


if __name__ == "__main__":
    main()
