import numpy as np
import pytest

from eossl.data.splits import LabelFractionError, multilabel_fraction

FRACTIONS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
PREVALENCE = np.array([0.45, 0.3, 0.2, 0.12, 0.08, 0.05, 0.03, 0.02, 0.0])  # last class: set by hand


def make_multilabel(num_samples: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Imbalanced 0/1 matrix over the store; candidates are every other sample, one class in only 3 of them."""
    rng = np.random.default_rng(seed)
    y = (rng.random((num_samples, len(PREVALENCE))) < PREVALENCE).astype(np.int8)
    candidates = np.arange(0, num_samples, 2)
    y[candidates[[5, len(candidates) // 4, 4 * len(candidates) // 5]], -1] = 1  # rare class: 3 candidates
    y[candidates[[7, 8, 9, 10]], :] = 0  # some all-zero rows for sure (plus random ones)
    y[1, -1] = 1  # a non-candidate holding the rare class must not leak in
    return y, candidates


def test_nested_exact_size_and_every_class_held():
    y, candidates = make_multilabel()
    present = y[candidates].any(axis=0)
    assert present.all() and y[candidates, -1].sum() == 3 and (y[candidates].sum(axis=1) == 0).any()
    for seed in range(4):
        previous = np.array([], dtype=int)
        for fraction in FRACTIONS:
            subset = multilabel_fraction(y, candidates, fraction, seed)
            assert len(subset) == round(fraction * len(candidates))
            assert np.all(np.diff(subset) > 0)  # sorted, no repeats
            assert set(subset) <= set(candidates)
            assert set(previous) <= set(subset), f"seed {seed}: fraction {fraction} not nested"
            assert y[subset].any(axis=0).all(), f"seed {seed}: fraction {fraction} misses a class"
            previous = subset
        np.testing.assert_array_equal(previous, candidates)


def test_too_small_fraction_raises_with_the_needed_size():
    y, candidates = make_multilabel()
    tiny = 1 / len(candidates)  # one label, fewer than the classes present
    with pytest.raises(
        LabelFractionError, match=r"fraction .* of 1500 training samples gives 2 labels, fewer than the"
    ):
        multilabel_fraction(y, candidates, 2 * tiny, seed=0)
    with pytest.raises(LabelFractionError, match=r"samples needed to hold each of the 9 classes present.*at least"):
        multilabel_fraction(y, candidates, tiny, seed=0)
    # the smallest allowed size works and holds every class
    for seed in range(3):
        needed = next(k for k in range(1, 20) if _ok(y, candidates, k / len(candidates), seed))
        subset = multilabel_fraction(y, candidates, needed / len(candidates), seed)
        assert len(subset) == needed and y[subset].any(axis=0).all()
        assert needed <= y.shape[1]


def _ok(y: np.ndarray, candidates: np.ndarray, fraction: float, seed: int) -> bool:
    try:
        multilabel_fraction(y, candidates, fraction, seed)
    except LabelFractionError:
        return False
    return True


def test_stratification_beats_random_subsets():
    y, candidates = make_multilabel()
    full = np.column_stack([y[candidates], y[candidates].sum(axis=1) == 0]).mean(axis=0)  # incl. "no label"
    n = round(0.1 * len(candidates))
    iterative, random = [], []
    for seed in range(8):
        subset = multilabel_fraction(y, candidates, 0.1, seed)
        share = np.column_stack([y[subset], y[subset].sum(axis=1) == 0]).mean(axis=0)
        # every class tracks its share; the 3-sample class must still appear once (1/150 vs 3/1500)
        np.testing.assert_allclose(share, full, atol=0.006)
        iterative.append(np.abs(share - full).mean())
        drawn = np.random.default_rng(100 + seed).choice(candidates, n, replace=False)
        random.append(np.abs(np.column_stack([y[drawn], y[drawn].sum(axis=1) == 0]).mean(axis=0) - full).mean())
    assert np.mean(iterative) < 0.5 * np.mean(random), (np.mean(iterative), np.mean(random))
    for fraction in (0.05, 0.25, 0.5):  # every prefix is stratified, not just 10%
        subset = multilabel_fraction(y, candidates, fraction, seed=1)
        share = np.column_stack([y[subset], y[subset].sum(axis=1) == 0]).mean(axis=0)
        np.testing.assert_allclose(share, full, atol=0.015)


def test_seeds():
    y, candidates = make_multilabel()
    for fraction in (0.05, 0.1, 0.5):
        a, b = multilabel_fraction(y, candidates, fraction, 0), multilabel_fraction(y, candidates, fraction, 1)
        assert not np.array_equal(a, b)
        np.testing.assert_array_equal(a, multilabel_fraction(y, candidates, fraction, 0))


def test_accepts_bool_and_list_inputs_and_empty_candidates():
    y, candidates = make_multilabel(400)
    np.testing.assert_array_equal(
        multilabel_fraction(y.astype(bool), list(candidates), 0.25, 3), multilabel_fraction(y, candidates, 0.25, 3)
    )
    assert len(multilabel_fraction(y, np.array([], dtype=int), 0.5, 0)) == 0
    no_labels = np.zeros((50, 3), dtype=np.int8)  # nothing to cover: any size works
    assert len(multilabel_fraction(no_labels, np.arange(50), 0.02, 0)) == 1


def test_bad_inputs():
    y, candidates = make_multilabel(200)
    for fraction in (0.0, -0.1, 1.5):
        with pytest.raises(LabelFractionError, match="must be in"):
            multilabel_fraction(y, candidates, fraction, 0)
    with pytest.raises(ValueError, match=r"2-D .* got shape \(200,\)"):
        multilabel_fraction(y[:, 0], candidates, 0.5, 0)
    with pytest.raises(ValueError, match=r"only 0/1 values, got \[2\]"):
        multilabel_fraction(np.where(y == 1, 2, 0), candidates, 0.5, 0)
    with pytest.raises(ValueError, match=r"only 0/1 values, got \[nan\]"):
        multilabel_fraction(np.where(y == 1, np.nan, 0.0), candidates, 0.5, 0)
    with pytest.raises(ValueError, match="integer sample indices"):
        multilabel_fraction(y, candidates.astype(float), 0.5, 0)
    with pytest.raises(ValueError, match="repeat"):
        multilabel_fraction(y, np.concatenate([candidates, candidates[:1]]), 0.5, 0)


def test_store_sized_input():
    """10,000 x 11 as in the demo store (about 0.2 s measured; timings live in benchmarks, not here)."""
    rng = np.random.default_rng(1)
    y = (rng.random((10_000, 11)) < np.linspace(0.5, 0.002, 11)).astype(np.int8)
    small, large = (multilabel_fraction(y, np.arange(10_000), f, seed=0) for f in (0.01, 0.7))
    assert len(large) == 7000 and np.isin(small, large).all()
    assert (y[small].sum(0) > 0).all()
