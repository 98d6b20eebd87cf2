"""Variation operators: drawn by weight or by a bandit, restored from the archive."""

from collections import Counter
from pathlib import Path

import pytest

from cambrian.agent._operators import OperatorPolicy, read_ideas, recommendation_lines
from cambrian.config import OperatorConfig
from cambrian.errors import ConfigError
from cambrian.prompts import TEMPLATE_DIR


def _draws(policy: OperatorPolicy, n: int, available=("diff", "region", "rewrite")) -> Counter:
    return Counter(policy.choose(list(available)) for _ in range(n))


def test_weights_set_the_shares_and_zero_weights_are_never_drawn() -> None:
    policy = OperatorPolicy(OperatorConfig(diff=1, region=3, rewrite=0, crossover=0), seed=1)
    counts = _draws(policy, 2000)
    assert set(counts) == {"diff", "region"}
    assert 2.5 < counts["region"] / counts["diff"] < 3.5
    assert policy.stats()["region"].pulls == counts["region"]


def test_crossover_only_when_available() -> None:
    policy = OperatorPolicy(OperatorConfig(crossover=5), seed=2)
    assert "crossover" not in _draws(policy, 200)
    assert "crossover" in _draws(policy, 200, ("diff", "region", "rewrite", "crossover"))


def test_the_ucb_bandit_moves_to_the_operator_that_improves() -> None:
    policy = OperatorPolicy(OperatorConfig(adaptive="ucb", ucb_c=0.3), seed=3)
    for _ in range(300):
        name = policy.choose(["diff", "region", "rewrite"])
        policy.reward(name, 0.5 if name == "rewrite" else 0.0)
    stats = policy.stats()
    assert stats["rewrite"].pulls > stats["diff"].pulls + stats["region"].pulls


def test_forget_undoes_a_pull_and_restore_rebuilds_the_stats() -> None:
    policy = OperatorPolicy(OperatorConfig(), seed=4)
    name = policy.choose(["diff"])
    policy.forget(name)
    assert policy.stats()["diff"].pulls == 0
    policy.restore({"region": {"pulls": 7, "rewards": 6, "successes": 2, "reward_sum": 0.5}})
    restored = policy.stats()["region"]
    assert (restored.pulls, restored.rewards, restored.successes) == (7, 6, 2)
    assert policy.stats()["diff"].pulls == 0


def test_an_all_zero_operator_config_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one"):
        OperatorConfig(diff=0, region=0, rewrite=0, crossover=0)
    assert issubclass(ConfigError, Exception)


def test_ideas_come_from_the_set_or_the_default_one(tmp_path: Path) -> None:
    default = read_ideas(TEMPLATE_DIR / "default")
    assert len(default) >= 10 and not any(line.startswith("#") for line in default)
    assert read_ideas(tmp_path) == default
    (tmp_path / "ideas.txt").write_text("# mine\nUse a heap.\n\n")
    assert read_ideas(tmp_path) == ["Use a heap."]


def test_recommendation_lines_are_the_list_items() -> None:
    text = "Recommendations:\n- Try a hexagonal layout of rows.\n2. Shrink the corner circles.\nok"
    assert recommendation_lines(text) == [
        "Try a hexagonal layout of rows.",
        "Shrink the corner circles.",
    ]
    assert recommendation_lines("Use fewer, larger circles near the edges.") == [
        "Use fewer, larger circles near the edges."
    ]


def test_pick_line_names_simple_statements_and_favours_numbers() -> None:
    import random

    from cambrian.agent._operators import CONSTANT_WEIGHT, NUMBER_WEIGHT, pick_line, simple_lines

    code = (
        "import math\n# EVOLVE-BLOCK-START\nSTEP = 0.25  # a parameter\n\n\ndef f(xs):\n"
        "    total = sum(xs)\n    for x in xs:\n        total += math.sqrt(x) / 2\n"
        "    return total\n"
        "# EVOLVE-BLOCK-END\nOUTSIDE = 3\n"
    )
    files = {"s.py": code}
    assert simple_lines(files) == [
        ("STEP = 0.25  # a parameter", "STEP = "),
        ("total = sum(xs)", "total = "),
        ("total += math.sqrt(x) / 2", "total += "),
        ("return total", "return "),
    ]  # no def, for, import, or line outside the block
    rng = random.Random(0)
    picks = Counter(pick_line(files, rng)[1] for _ in range(3000))
    plain = (picks["total = "] + picks["return "]) / 2
    assert CONSTANT_WEIGHT * 0.8 < picks["STEP = "] / plain < CONSTANT_WEIGHT * 1.2
    assert NUMBER_WEIGHT * 0.7 < picks["total += "] / plain < NUMBER_WEIGHT * 1.3
    assert pick_line({"s.py": "def f():\n    pass\n"}, rng) is None
