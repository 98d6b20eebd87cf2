"""A warm evaluator worker: ``FILE:FUNCTION`` loaded once, then one candidate per request.

``evaluator.python = "evaluate.py:evaluate"`` starts this in the sandbox's outer tier
(the evaluator's), in a slot folder that each candidate's checkout is copied into. Each
request is one JSON line on stdin::

    {"dir": "/slot/w", "env": {"CAMBRIAN_STAGE": "1", "CAMBRIAN_RUN_CONFIG": ...}}

The worker enters ``dir``, sets ``env``, calls ``FUNCTION(candidate)`` and answers one
JSON line on its original stdout: ``{"ok": true, "result": "<the returned object as
JSON>"}`` or ``{"ok": false, "error": "<last lines of the traceback>"}``. What the
function prints goes to stderr, so nothing it prints can pose as an answer; candidate
code runs through ``candidate.run`` in the inner tier and never reaches this process.
The function is loaded at the first request from ``FILE``, a copy of the task's own
file in a folder candidate code never sees, with that folder first on ``sys.path`` (as
``python FILE`` would have it); the checkout is the current directory only, so no
module a candidate leaves there is ever imported. Standard library only (plus
``cambrian_candidate``, next to this file).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence

import cambrian_candidate

MODULE = "cambrian_evaluator"
TRACE_LINES = 8


class Candidate:
    """What ``evaluate(candidate)`` gets: the checkout and a way to run its code.

    Attributes:
        path: The candidate's checkout (the current directory), absolute.
        stage: The cascade stage being run (1 for a single evaluator).
    """

    def __init__(self, path: str, stage: int) -> None:
        self.path = path
        self.stage = stage

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float | None = None,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> tuple[int, str, str]:
        """Run candidate code in the inner tier: ``(returncode, stdout, stderr)``.

        See ``cambrian_candidate.run``; ``TimeoutError`` past ``timeout_s``.
        """
        return cambrian_candidate.run(argv, timeout_s=timeout_s, stdin=stdin, env=env)


def load(path: str, name: str) -> Callable[[Candidate], object]:
    """The function ``name`` of the Python file ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(MODULE, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE] = module
    spec.loader.exec_module(module)
    function = getattr(module, name, None)
    if not callable(function):
        raise AttributeError(f"{path} defines no function {name}()")
    return function


def answer(function: Callable[[Candidate], object], request: dict) -> dict:
    """Call the function on the request's candidate; the reply object."""
    stage = int(request.get("env", {}).get("CAMBRIAN_STAGE", "1"))
    result = function(Candidate(request["dir"], stage))
    if not isinstance(result, dict):
        return {"ok": False, "error": f"the evaluator returned {type(result).__name__}, not a dict"}
    return {"ok": True, "result": json.dumps(result, allow_nan=True)}


def main(argv: list[str]) -> int:
    """``cambrian_worker.py FILE FUNCTION``: serve requests until stdin closes."""
    if len(argv) != 2:
        print("usage: cambrian_worker.py FILE FUNCTION", file=sys.stderr)
        return 2
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the evaluator's own prints go to stderr, never into the channel
    function = None
    for line in sys.stdin:
        request = json.loads(line)
        os.chdir(request["dir"])
        os.environ.update(request.get("env", {}))
        try:
            if function is None:
                function = load(argv[0], argv[1])
            reply = answer(function, request)
        except BaseException as exc:  # noqa: BLE001 - the evaluator's failure is data
            lines = traceback.format_exception(exc)
            reply = {"ok": False, "error": "".join(lines[-TRACE_LINES:])}
        sys.stderr.write(f"{request.get('mark', '')}\n")  # all it printed is out first
        sys.stderr.flush()
        channel.write(json.dumps(reply) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
