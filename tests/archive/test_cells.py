import pytest

from cambrian.archive import bin_index, cell_key, is_better
from cambrian.config import FeatureBins

AXIS = FeatureBins(min=0.0, max=10.0, bins=5)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, 0),
        (1.99, 0),
        (2.0, 1),
        (5.0, 2),
        (9.99, 4),
        (10.0, 4),  # the max falls in the last bin
        (-3.0, 0),  # below the range clamps to the first bin
        (1e9, 4),  # above the range clamps to the last bin
        (None, 0),  # missing
        (float("nan"), 0),
        ("fast", 0),  # non-numeric
        (True, 0),
        (7, 3),  # ints work too
    ],
)
def test_bin_index(value, expected):
    assert bin_index(value, AXIS) == expected


def test_cell_key_without_axes_is_one_cell():
    assert cell_key({"anything": 3.0}, {}) == "0"
    assert cell_key({}, {}) == "0"


def test_cell_key_follows_axis_order_and_missing_features():
    axes = {"size": AXIS, "speed": FeatureBins(min=0, max=1, bins=10)}
    assert cell_key({"size": 6.0, "speed": 0.55}, axes) == "3,5"
    assert cell_key({"speed": 0.55, "size": 6.0}, axes) == "3,5"
    assert cell_key({"speed": 0.99}, axes) == "0,9"
    reordered = {"speed": axes["speed"], "size": AXIS}
    assert cell_key({"size": 6.0, "speed": 0.55}, reordered) == "5,3"


def test_is_better_is_strict_and_direction_aware():
    assert is_better(1.0, None, maximize=True)
    assert is_better(1.0, None, maximize=False)
    assert is_better(2.0, 1.0, maximize=True)
    assert not is_better(1.0, 1.0, maximize=True)
    assert not is_better(0.5, 1.0, maximize=True)
    assert is_better(0.5, 1.0, maximize=False)
    assert not is_better(1.0, 1.0, maximize=False)
    assert not is_better(2.0, 1.0, maximize=False)
