"""Statistics on hand-computed examples."""

import math

import numpy as np
import pytest

from eossl.evaluation.statistics import labels_saved, mean_interval, paired_comparison


def test_mean_interval_by_hand():
    ci = mean_interval([0.5, 0.6, 0.7])
    # mean 0.6, std 0.1, t_{0.975, 2} = 4.302653
    assert ci.mean == pytest.approx(0.6) and ci.std == pytest.approx(0.1)
    half = 4.302653 * 0.1 / math.sqrt(3)
    assert ci.low == pytest.approx(0.6 - half, abs=1e-5) and ci.high == pytest.approx(0.6 + half, abs=1e-5)
    single = mean_interval([0.42])
    assert (single.mean, single.std, single.low, single.high, single.n) == (0.42, 0.0, 0.42, 0.42, 1)
    with pytest.raises(ValueError, match="at least one value"):
        mean_interval([])


def test_paired_comparison_by_hand():
    a, b = [0.60, 0.62, 0.61, 0.63], [0.50, 0.55, 0.52, 0.51]
    result = paired_comparison(a, b)
    diff = np.array(a) - np.array(b)  # 0.10, 0.07, 0.09, 0.12: mean 0.095, std 0.0208
    t = diff.mean() / (diff.std(ddof=1) / 2)
    assert result.difference.mean == pytest.approx(0.095)
    assert result.p_value == pytest.approx(2 * (1 - __import__("scipy").stats.t.cdf(t, 3)))
    assert result.wins == 4 and result.n == 4 and result.verdict == "A better"
    assert paired_comparison(b, a).verdict == "B better"
    noisy = paired_comparison([0.5, 0.6, 0.4], [0.55, 0.5, 0.45])
    assert noisy.verdict == "no significant difference" and noisy.wins == 1
    assert paired_comparison([0.5, 0.5], [0.5, 0.5]).p_value == 1.0
    assert paired_comparison([0.6, 0.7], [0.5, 0.6]).verdict == "A better"  # constant +0.1
    with pytest.raises(ValueError, match="same length"):
        paired_comparison([0.1, 0.2], [0.1])


def test_labels_saved_interpolates_in_log_fraction():
    fractions = [0.01, 0.1, 1.0]
    # reference 0.6 is reached halfway (in log) between 1% and 10%: sqrt(0.01 * 0.1)
    assert labels_saved(fractions, [0.5, 0.7, 0.8], 0.6) == pytest.approx(math.sqrt(0.001))
    assert labels_saved(fractions, [0.5, 0.7, 0.8], 0.4) == 0.01  # already there at the smallest
    assert labels_saved(fractions, [0.5, 0.7, 0.8], 0.9) is None  # never reached
    assert labels_saved([1.0, 0.1, 0.01], [0.8, 0.7, 0.5], 0.7) == pytest.approx(0.1)  # unsorted input
