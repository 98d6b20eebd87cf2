import random
from collections import Counter

import pytest

from cambrian.archive import SELECTION_POLICIES, pick_inspirations, rank_weights, select_parent

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
    assert set(SELECTION_POLICIES) == {"uniform", "fitness"}


def test_uniform_reaches_every_elite_evenly():
    rng = random.Random(1)
    counts = Counter(select_parent("uniform", ELITES, True, rng) for _ in range(4000))
    assert set(counts) == {"a", "b", "c", "d"}
    assert all(800 < n < 1200 for n in counts.values())


@pytest.mark.parametrize(("maximize", "best", "worst"), [(True, "b", "d"), (False, "d", "b")])
def test_fitness_prefers_better_ranks(maximize, best, worst):
    rng = random.Random(2)
    counts = Counter(select_parent("fitness", ELITES, maximize, rng) for _ in range(5000))
    # Weights 4:3:2:1 out of 10.
    assert 1800 < counts[best] < 2200
    assert 350 < counts[worst] < 650
    assert counts[best] > counts[worst]


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
