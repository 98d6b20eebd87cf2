"""Variation operators: which kind of change a proposal asks for, and the idea it carries.

An operator decides the prompt's request and the reply format (``diff``: SEARCH/REPLACE;
``region``: the EVOLVE-BLOCK's or the changed functions' new code; ``rewrite``: whole
files; ``crossover``: two programs to combine, answered like ``region``; ``line``: one
simple statement named for change, answered like ``region``). Operators are
drawn by weight, or by a bandit credited with each child's improvement exactly as the
model ensemble is. Each prompt also carries one idea, sampled from the task's ideas,
the template set's ``ideas.txt`` and the run's meta-recommendations, so that a small
model asked the same question twice still makes different changes.
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from cambrian.agent._edit_parts import END, START
from cambrian.agent._parse import parse
from cambrian.config import OperatorConfig
from cambrian.llm import ModelStats
from cambrian.llm import choose as choose_policy
from cambrian.prompts import TEMPLATE_DIR

OPERATORS = ("diff", "region", "rewrite", "crossover", "line")
LINE_IDEA = "Change the numbers in `{line}` to values you expect to score better."
IDEAS_FILE = "ideas.txt"
_NOT_CODE = ("#", '"""', "'''", '"', "'")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d*)?(?:e-?\d+)?")
CONSTANT_WEIGHT = 8  # how much likelier a pick a line whose right side is a number is
NUMBER_WEIGHT = 2  # ... and one whose right side holds a number
_ITEM = re.compile(r"^(?:[-*\u2022]|\d{1,2}[.)])\s+(.*)$")


def read_ideas(templates: Path) -> list[str]:
    """The template set's ideas, one per line ("#" comments and blanks skipped).

    A set without ``ideas.txt`` uses the built-in default set's.
    """
    path = templates / IDEAS_FILE
    if not path.is_file():
        path = TEMPLATE_DIR / "default" / IDEAS_FILE
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def recommendation_lines(text: str) -> list[str]:
    """The list items of a meta-recommendation (markers stripped); else its long lines."""
    items, lines = [], []
    for line in text.splitlines():
        line = line.strip()
        match = _ITEM.match(line)
        if match and len(match.group(1)) > 12:
            items.append(match.group(1).strip())
        elif len(line) > 12:
            lines.append(line)
    return items or lines


def fill_idea(idea: str, files: Mapping[str, str], rng: random.Random) -> str:
    """``idea`` with ``{line}`` replaced by a random line of code the model may change.

    The line comes from the EVOLVE-BLOCK regions (the whole file where there are none),
    skipping blank lines, comments, markers and docstring lines. An idea that needs a
    line when there is none becomes "".
    """
    if "{line}" not in idea:
        return idea
    lines = [line.strip() for text in files.values() for line in _changeable(text)]
    lines = [line for line in lines if len(line) > 3 and not line.startswith(_NOT_CODE)]
    return idea.replace("{line}", rng.choice(lines)) if lines else ""


def pick_line(files: Mapping[str, str], rng: random.Random) -> tuple[str, str] | None:
    """A simple statement the model may change, and its left side: ``(line, head)``.

    Only single-line assignments and returns qualify (``R = 0.3``, ``r[i] *= s``,
    ``return x``): their head (``R = ``, ``r[i] *= ``, ``return ``) can begin the answer,
    so a small model writes a new right side rather than echoing the program. A line
    whose right side is a number (a parameter to tune, such as ``R = 0.3``) is
    ``CONSTANT_WEIGHT`` times as likely as a line with no number, one whose right side
    holds a number ``NUMBER_WEIGHT`` times. None when the editable code has no such line.
    """
    picks = simple_lines(files)
    if not picks:
        return None
    return rng.choices(picks, weights=[_weight(line[len(head) :]) for line, head in picks])[0]


def _weight(right: str) -> int:
    """How likely a line is picked, from its right side: parameters first."""
    value = right.split("#", 1)[0].strip()
    if _NUMBER.fullmatch(value.lstrip("-")):
        return CONSTANT_WEIGHT
    return NUMBER_WEIGHT if _NUMBER.search(value) else 1


def simple_lines(files: Mapping[str, str]) -> list[tuple[str, str]]:
    """Every ``(line, head)`` that ``pick_line`` may pick."""
    lines = (line.strip() for text in files.values() for line in _changeable(text))
    return [(line, head) for line in lines if (head := _head(line))]


def _head(line: str) -> str:
    """The left side of a one-line assignment or return, with its operator ("" if none)."""
    try:
        tree = parse(line)
    except (SyntaxError, ValueError):
        return ""
    if len(tree.body) != 1:
        return ""
    node = tree.body[0]
    if isinstance(node, ast.Return) and node.value is not None:
        return "return "
    if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign) and node.value is not None:
        return line.encode()[: node.value.col_offset].decode()  # offsets count UTF-8 bytes
    return ""


def _changeable(text: str) -> list[str]:
    """The lines of ``text`` inside its EVOLVE-BLOCK regions, or all when it has none."""
    if START not in text:
        return text.splitlines()
    out, inside = [], False
    for line in text.splitlines():
        if START in line or END in line:
            inside = START in line
        elif inside:
            out.append(line)
    return out


class OperatorPolicy:
    """Draws the operator of each proposal and learns which ones pay off.

    Args:
        config: The ``[operators]`` section.
        seed: Seed of the policy's own RNG.
    """

    def __init__(self, config: OperatorConfig, *, seed: int | None) -> None:
        self._config = config
        self._weights = {name: w for name, w in config.weights().items() if w > 0}
        self._stats = {name: ModelStats() for name in self._weights}
        self.rng = random.Random(seed)

    @property
    def names(self) -> list[str]:
        """The operators in use (those with a positive weight)."""
        return list(self._weights)

    def choose(self, available: Sequence[str]) -> str:
        """Pick an operator among ``available`` and count a pull for it.

        Falls back to the first of ``available`` when none of them has a weight.
        """
        names = [name for name in self._weights if name in available] or [available[0]]
        stats = [self._stats.setdefault(name, ModelStats()) for name in names]
        weights = [self._weights.get(name, 1.0) for name in names]
        policy = "weights" if self._config.adaptive == "off" else self._config.adaptive
        index = choose_policy(
            policy, stats, weights, self.rng, ucb_c=self._config.ucb_c, cost_weight=0.0
        )
        name = names[index]
        self._update(name, pulls=1)
        return name

    def reward(self, name: str, improvement: float | None) -> None:
        """Credit ``name`` with a child's improvement (None or negative: 0)."""
        if name in self._stats:
            gain = max(0.0, improvement or 0.0)
            self._update(name, rewards=1, successes=int(gain > 0), reward_sum=gain)

    def forget(self, name: str) -> None:
        """Undo a pull whose outcome says nothing about the operator (a duplicate)."""
        if name in self._stats:
            self._update(name, pulls=-1)

    def restore(self, history: Mapping[str, Mapping[str, float]]) -> None:
        """Rebuild the statistics from the archive's ``operator_stats()`` on resume."""
        for name in self._stats:
            row = history.get(name, {})
            self._stats[name] = ModelStats(
                pulls=int(row.get("pulls", 0)),
                rewards=int(row.get("rewards", 0)),
                successes=int(row.get("successes", 0)),
                reward_sum=float(row.get("reward_sum", 0.0)),
            )

    def stats(self) -> dict[str, ModelStats]:
        """Statistics per operator in use."""
        return dict(self._stats)

    def idea(self, pool: Sequence[str]) -> str:
        """One idea from ``pool`` ("" when it is empty)."""
        return self.rng.choice(list(pool)) if pool else ""

    def _update(self, name: str, **delta: float) -> None:
        """Add ``delta`` to the fields of ``name``'s statistics."""
        current = self._stats[name]
        self._stats[name] = replace(
            current, **{key: getattr(current, key) + value for key, value in delta.items()}
        )
