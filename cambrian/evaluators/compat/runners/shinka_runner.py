"""Run a ShinkaEvolve ``evaluate.py`` inside the sandbox and write cambrian's result.

cambrian copies this file into each work dir as ``.cambrian_runner.py``. It calls the
task's evaluator the way ShinkaEvolve does, ``evaluate.py --program_path P --results_dir
D``, then turns ``metrics.json`` and ``correct.json`` into cambrian's result JSON.
``private`` metrics are kept under the reserved ``_private`` key, which cambrian stores
but never shows to the LLM. ShinkaEvolve evaluators import the program into their own
process, so inside cambrian's sandbox ``evaluate.py`` runs through ``$CAMBRIAN_RUN``, in
the inner tier with the candidate, and ``D`` is a fresh folder in the work dir that this
process reads back (no link followed). Standard library only.

Usage: ``python .cambrian_runner.py --evaluate evaluate.py --program initial.py``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

MAX_FILE_BYTES = 1_000_000

PRIVATE = "_private"
_SECTIONS = ("combined_score", "public", "private", "text_feedback")


def _numeric(value: Any) -> bool:
    """Whether ``value`` is a finite number (booleans excluded)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _read(path: Path) -> dict[str, Any]:
    """A JSON object from the regular file ``path`` (no link followed), or exit."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        raise SystemExit(f"evaluate.py wrote no {path.name} to its --results_dir") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise SystemExit(f"{path.name} is not a regular file")
        text = handle.read(MAX_FILE_BYTES + 1)
    if len(text) > MAX_FILE_BYTES:
        raise SystemExit(f"{path.name} is larger than {MAX_FILE_BYTES} bytes")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SystemExit(f"{path.name} is not valid JSON: {getattr(exc, 'msg', exc)}") from None
    if not isinstance(data, dict):
        raise SystemExit(f"{path.name} must hold a JSON object")
    return data


def convert(metrics: dict[str, Any]) -> dict[str, Any]:
    """The result object cambrian reads, built from one ShinkaEvolve ``metrics.json``."""
    public = metrics.get("public") or {}
    shown = {k: v for k, v in metrics.items() if k not in _SECTIONS}
    shown.update(public if isinstance(public, dict) else {"public": public})
    if _numeric(metrics.get("combined_score")):
        score = float(metrics["combined_score"])
    else:
        values = [float(v) for v in shown.values() if _numeric(v)]
        score = sum(values) / len(values) if values else 0.0
    if metrics.get("private") is not None:
        shown[PRIVATE] = metrics["private"]
    feedback = metrics.get("text_feedback")
    artifacts = {"feedback": feedback if isinstance(feedback, str) else json.dumps(feedback)}
    return {"score": score, "metrics": shown, "artifacts": artifacts if feedback else {}}


def main(argv: list[str] | None = None) -> int:
    """Run evaluate.py, check ``correct.json``, write the result to ``$CAMBRIAN_RESULT``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluate", default="evaluate.py")
    parser.add_argument("--program", required=True)
    args = parser.parse_args(argv)
    launcher = shlex.split(os.environ.get("CAMBRIAN_RUN", ""))
    # In the work dir: the inner tier has a /tmp of its own, and another uid.
    results = Path(tempfile.mkdtemp(prefix=".cambrian-shinka-", dir="." if launcher else None))
    try:
        results.chmod(0o777)
        argv_eval = [*launcher, sys.executable, args.evaluate, "--program_path", args.program]
        done = subprocess.run([*argv_eval, "--results_dir", str(results)], check=False)
        if done.returncode != 0:
            print(f"evaluate.py exited with code {done.returncode}", file=sys.stderr)
            return done.returncode
        correct = _read(results / "correct.json")
        if not correct.get("correct", False):
            raise SystemExit(f"evaluate.py marked the program incorrect: {correct.get('error')}")
        text = json.dumps(convert(_read(results / "metrics.json")))
    finally:
        shutil.rmtree(results, ignore_errors=True)
    target = os.environ.get("CAMBRIAN_RESULT")
    if target:
        Path(target).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
