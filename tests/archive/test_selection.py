import random
from collections import Counter

import pytest

from cambrian.archive import SELECTION_POLICIES, pick_inspirations, rank_weights, select_parent
from cambrian.archive._selection import (
    EliteRow,
    dgm_weights,
    draw_by_rejection,
    normalized_scores,
    power_law_weights,
    softmax,
)
from cambrian.config import SelectionConfig

ELITES = [("a", 1.0), ("b", 5.0), ("c", 3.0), ("d", -2.0)]


def test_rank_weights_best_weighs_most():
    assert rank_weights([1.0, 5.0, 3.0, -2.0], maximize=True) == [2.0, 4.0, 3.0, 1.0]
    assert rank_weights([1.0, 5.0, 3.0, -2.0], maximize=False) == [3.0, 1.0, 2.0, 4.0]


def test_rank_weights_ties_share_the_better_rank():
    assert rank_weights([2.0, 2.0, 1.0], maximize=True) == [3.0, 3.0, 1.0]
    assert rank_weights([], maximize=True) == []


def test_select_parent_empty_and_unknown_policy():
    assert select_parent("uniform", [], True, random.Random(0)) is None
    with pytest.raises(ValueError, match="policy"):
        select_parent("nope", ELITES, True, random.Random(0))
    assert set(SELECTION_POLICIES) == {
        "uniform",
        "fitness",
        "power_law",
        "dgm",
        "thompson",
        "tournament",
        "greedy",
        "random",
    }


def test_uniform_reaches_every_elite_evenly():
    rng = random.Random(1)
    counts = Counter(select_parent("uniform", ELITES, True, rng) for _ in range(4000))
    assert set(counts) == {"a", "b", "c", "d"}
    assert all(800 < n < 1200 for n in counts.values())


@pytest.mark.parametrize(("maximize", "best", "worst"), [(True, "b", "d"), (False, "d", "b")])
def test_fitness_prefers_better_ranks(maximize, best, worst):
    rng = random.Random(2)
    counts = Counter(select_parent("fitness", ELITES, maximize, rng) for _ in range(5000))
    # Rank-normalised 1, .75, .5, .25, softmax at temperature 1: best e^.75 = 2.1x the worst.
    probs = softmax([1.0, 0.75, 0.5, 0.25], 1.0)
    assert abs(counts[best] / 5000 - probs[0]) < 0.03
    assert abs(counts[worst] / 5000 - probs[3]) < 0.03


def test_selection_is_deterministic_for_a_seed():
    first = [select_parent("fitness", ELITES, True, random.Random(7)) for _ in range(5)]
    second = [select_parent("fitness", ELITES, True, random.Random(7)) for _ in range(5)]
    assert first == second


def test_pick_inspirations_top_k_first_excludes_parent_no_duplicates():
    rng = random.Random(3)
    for _ in range(200):
        ids = pick_inspirations(ELITES, exclude="b", n=2, top_k=1, maximize=True, rng=rng)
        assert ids[0] == "c"  # best once the parent "b" is excluded
        assert len(ids) == 2 and len(set(ids)) == 2 and "b" not in ids


def test_pick_inspirations_bounds():
    rng = random.Random(4)
    assert pick_inspirations(ELITES, exclude="a", n=0, top_k=1, maximize=True, rng=rng) == []
    everyone = pick_inspirations(ELITES, exclude="a", n=10, top_k=2, maximize=False, rng=rng)
    assert everyone[:2] == ["d", "c"]
    assert sorted(everyone) == ["b", "c", "d"]
    only_random = pick_inspirations(ELITES, exclude="x", n=4, top_k=0, maximize=True, rng=rng)
    assert sorted(only_random) == ["a", "b", "c", "d"]
    assert pick_inspirations([("a", 1.0)], exclude="a", n=3, top_k=1, maximize=True, rng=rng) == []


def test_normalisations_on_fixed_scores():
    assert normalized_scores([1.0, 5.0, 3.0, -2.0], True, "rank") == [0.5, 1.0, 0.75, 0.25]
    z = normalized_scores([1.0, 2.0, 3.0], True, "zscore")
    assert z[1] == 0.0 and z[0] == pytest.approx(-1.2247, abs=1e-4) and z[2] == -z[0]
    assert normalized_scores([1.0, 2.0, 3.0], False, "zscore") == [-v for v in z]
    assert normalized_scores([4.0, 4.0], True, "zscore") == [0.0, 0.0]
    assert softmax([0.0, 0.0], 1.0) == [0.5, 0.5]
    assert softmax([1000.0, 0.0], 1.0)[0] == pytest.approx(1.0)  # no overflow


def test_zscore_fitness_with_low_temperature_picks_the_best():
    params = SelectionConfig(normalize="zscore", temperature=0.01)
    rng = random.Random(0)
    picks = {select_parent("fitness", ELITES, True, rng, params) for _ in range(100)}
    assert picks == {"b"}


def test_power_law_weights_by_rank():
    assert power_law_weights([1.0, 5.0, 3.0, -2.0], True, 1.0) == [1 / 3, 1.0, 1 / 2, 1 / 4]
    assert power_law_weights([1.0, 5.0, 3.0], False, 2.0) == [1.0, 1 / 9, 1 / 4]
    assert power_law_weights([2.0, 2.0], True, 0.0) == [1.0, 1.0]
    rng = random.Random(5)
    counts = Counter(select_parent("power_law", ELITES, True, rng) for _ in range(4000))
    assert counts["b"] > counts["c"] > counts["a"] > counts["d"]


def test_dgm_weights_favour_good_scores_and_few_children():
    rows = [EliteRow("a", 1.0, children=0), EliteRow("b", 1.0, children=3), EliteRow("c", 0.0)]
    a, b, c = dgm_weights(rows, True, 10.0)
    # median 1.0: sigmoid(0) = .5 for a and b; c sits 1 below: sigmoid(-10).
    assert a == pytest.approx(0.5) and b == pytest.approx(0.5 / 4)
    assert c == pytest.approx(1 / (1 + 2.718281828**10), rel=1e-6)
    lo = dgm_weights(rows, False, 10.0)
    assert lo[2] > lo[0]  # minimising: the low score is the good one
    counts = Counter(select_parent("dgm", rows, True, random.Random(6)) for _ in range(3000))
    assert counts["a"] > 3 * counts["b"] and counts["c"] < 10


def test_thompson_prefers_the_successful_clade():
    rows = [
        EliteRow("lucky", 0.5, clade_trials=20, clade_successes=18),
        EliteRow("barren", 0.9, clade_trials=20, clade_successes=1),
        EliteRow("fresh", 0.1),
    ]
    rng = random.Random(7)
    counts = Counter(select_parent("thompson", rows, True, rng) for _ in range(2000))
    assert counts["lucky"] > counts["fresh"] > counts["barren"]
    assert counts["barren"] < 20
    first = [select_parent("thompson", rows, True, random.Random(1)) for _ in range(5)]
    assert first == [select_parent("thompson", rows, True, random.Random(1)) for _ in range(5)]


def test_tournament_returns_the_best_contestant():
    everyone = SelectionConfig(tournament=10)
    assert select_parent("tournament", ELITES, True, random.Random(0), everyone) == "b"
    assert select_parent("tournament", ELITES, False, random.Random(0), everyone) == "d"
    ties = [("x", 1.0), ("y", 1.0)]
    assert select_parent("tournament", ties, True, random.Random(3), everyone) == "x"
    one = SelectionConfig(tournament=1)
    rng = random.Random(4)
    counts = Counter(select_parent("tournament", ELITES, True, rng, one) for _ in range(2000))
    assert set(counts) == {"a", "b", "c", "d"}  # size 1 is uniform
    pairs = Counter(select_parent("tournament", ELITES, True, rng) for _ in range(2000))
    assert pairs["d"] == 0  # the worst never wins a tournament of 3 distinct elites
    assert pairs["b"] > pairs["c"] > 0 == pairs["a"]  # 3 of 4: b or c is always drawn


@pytest.mark.parametrize(("maximize", "best"), [(True, "b"), (False, "d")])
def test_greedy_always_returns_the_best(maximize, best):
    rng = random.Random(8)
    assert {select_parent("greedy", ELITES, maximize, rng) for _ in range(50)} == {best}
    ties = [("x", 1.0), ("y", 2.0), ("z", 2.0)]
    assert select_parent("greedy", ties, True, rng) == "y"  # the first of the tied best


def test_random_is_uniform_over_its_rows():
    rng = random.Random(9)
    counts = Counter(select_parent("random", ELITES, True, rng) for _ in range(4000))
    assert set(counts) == {"a", "b", "c", "d"}
    assert all(800 < n < 1200 for n in counts.values())


def test_draw_by_rejection_is_uniform_over_the_accepted_keys():
    accepted = {k: f"p{k}" for k in (2, 3, 5, 7, 11, 13, 17, 19)}  # 8 of 20 keys
    calls = []

    def lookup(keys):
        calls.append(len(keys))
        return {k: accepted[k] for k in keys if k in accepted}

    rng = random.Random(10)
    counts = Counter(draw_by_rejection(rng, 20, lookup) for _ in range(4000))
    assert set(counts) == set(accepted.values())
    assert all(400 < n < 600 for n in counts.values())  # 500 each
    assert len(calls) < 4100 and set(calls) == {16}  # nearly always one query per draw
    seeded = [draw_by_rejection(random.Random(1), 20, lookup) for _ in range(3)]
    assert seeded == [draw_by_rejection(random.Random(1), 20, lookup) for _ in range(3)]


def test_draw_by_rejection_gives_up_when_nothing_is_accepted():
    calls = []

    def lookup(keys):
        calls.append(keys)
        return {}

    assert draw_by_rejection(random.Random(0), 1000, lookup, batch=8, rounds=3) is None
    assert len(calls) == 3 and all(len(keys) == 8 for keys in calls)
    assert draw_by_rejection(random.Random(0), 0, lookup) is None and len(calls) == 3
