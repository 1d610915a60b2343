import numpy as np
import pandas as pd
import pytest

from eossl.data.splits import LabelFractionError, label_fraction, split_by_location


def test_splits_keep_locations_together():
    table = pd.DataFrame({"location_id": np.repeat(np.arange(50), 4)})
    splits = split_by_location(table, val=0.1, test=0.2, seed=1)
    locs = {k: set(table.location_id[v]) for k, v in splits.items()}
    assert not (locs["train"] & locs["test"]) and not (locs["train"] & locs["val"]) and not (locs["val"] & locs["test"])
    assert sum(len(v) for v in splits.values()) == 200
    assert len(locs["test"]) == 10 and len(locs["val"]) == 5


def test_fractions_are_stratified_nested_and_seeded():
    rng = np.random.default_rng(0)
    labels = rng.choice(5, size=1000, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    candidates = np.arange(0, 1000, 2)
    previous = np.array([], dtype=int)
    for fraction in (0.02, 0.1, 0.5, 1.0):
        subset = label_fraction(labels, candidates, fraction, seed=3)
        assert set(previous) <= set(subset)  # nested
        assert set(np.unique(labels[subset])) == set(np.unique(labels[candidates]))  # every class
        assert set(subset) <= set(candidates)
        assert abs(len(subset) - fraction * len(candidates)) <= 5
        previous = subset
    assert not np.array_equal(label_fraction(labels, candidates, 0.1, 0), label_fraction(labels, candidates, 0.1, 1))
    np.testing.assert_array_equal(
        label_fraction(labels, candidates, 0.1, 4), label_fraction(labels, candidates, 0.1, 4)
    )


def test_fraction_too_small_for_one_example_per_class():
    labels = np.repeat(np.arange(10), 20)
    with pytest.raises(LabelFractionError, match=r"gives 4 labels, fewer than the 10 classes.*at least 0.05"):
        label_fraction(labels, np.arange(200), 0.02, seed=0)
    with pytest.raises(LabelFractionError, match="must be in"):
        label_fraction(labels, np.arange(200), 0.0, seed=0)
