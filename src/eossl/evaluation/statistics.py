"""Statistics over seeds: confidence intervals, paired comparisons, and "labels saved".

All functions take plain arrays of per-seed values so they can be checked by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    """Mean, sample std and a two-sided Student-t confidence interval of the mean."""

    mean: float
    std: float
    low: float
    high: float
    n: int


def mean_interval(values: np.ndarray | list[float], confidence: float = 0.95) -> Interval:
    """Mean ± t_{n-1} * std / sqrt(n); with one value the interval is the point itself."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("mean_interval needs at least one value")
    mean = float(x.mean())
    if x.size == 1:
        return Interval(mean, 0.0, mean, mean, 1)
    std = float(x.std(ddof=1))
    if std == 0:
        return Interval(mean, 0.0, mean, mean, int(x.size))
    low, high = stats.t.interval(confidence, x.size - 1, loc=mean, scale=stats.sem(x))
    return Interval(mean, std, float(low), float(high), int(x.size))


@dataclass(frozen=True)
class PairedComparison:
    """A minus B over matched seeds: mean difference, its interval, the paired t-test and a verdict."""

    difference: Interval
    p_value: float
    wins: int
    n: int
    verdict: str  # "A better", "B better" or "no significant difference"


def paired_comparison(
    a: np.ndarray | list[float], b: np.ndarray | list[float], alpha: float = 0.05
) -> PairedComparison:
    """Does A beat B? Paired over seeds (same label subset per seed), two-sided t-test on the differences.

    With fewer than 2 pairs, or identical differences of zero, no test is possible and the verdict is
    "no significant difference"; with a constant non-zero difference the p-value is 0.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values must be two 1-D arrays of the same length (got {a.shape} and {b.shape})")
    diff = a - b
    interval = mean_interval(diff, 1 - alpha)
    if diff.size < 2:
        p = 1.0
    elif interval.std == 0:
        p = 1.0 if interval.mean == 0 else 0.0
    else:
        p = float(stats.ttest_rel(a, b).pvalue)
    verdict = "no significant difference"
    if p < alpha:
        verdict = "A better" if interval.mean > 0 else "B better"
    return PairedComparison(interval, p, int((diff > 0).sum()), int(diff.size), verdict)


def welch_difference(a: np.ndarray | list[float], b: np.ndarray | list[float], confidence: float = 0.95) -> Interval:
    """Mean of A minus mean of B for independent samples (different label subsets, e.g. 10% against 100%):
    Welch's t-interval with Satterthwaite's degrees of freedom; ``std`` is the difference's standard error.
    With fewer than two values on a side, or no spread at all, the interval is the point itself."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size == 0 or y.size == 0:
        raise ValueError("welch_difference needs at least one value on each side")
    diff = float(x.mean() - y.mean())
    if x.size < 2 or y.size < 2:
        return Interval(diff, 0.0, diff, diff, int(min(x.size, y.size)))
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = float(np.sqrt(va + vb))
    if se == 0:
        return Interval(diff, 0.0, diff, diff, int(min(x.size, y.size)))
    dof = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, dof)) * se
    return Interval(diff, se, diff - half, diff + half, int(min(x.size, y.size)))


def labels_saved(
    fractions: np.ndarray | list[float], pretrained: np.ndarray | list[float], reference: float
) -> float | None:
    """Smallest label fraction at which the pretrained curve reaches ``reference``, interpolated.

    ``reference`` is typically the from-scratch model trained on 100% of the labels. The curve is
    interpolated linearly in log(fraction) between measured fractions (label-efficiency curves are
    roughly linear there). Returns None when the pretrained model never reaches the reference, and
    the smallest measured fraction when it already does there (the true crossing may be lower).
    """
    f = np.asarray(fractions, dtype=float)
    y = np.asarray(pretrained, dtype=float)
    order = np.argsort(f)
    f, y = f[order], y[order]
    if (f <= 0).any():
        raise ValueError("label fractions must be positive")
    above = np.nonzero(y >= reference)[0]
    if above.size == 0:
        return None
    i = int(above[0])
    if i == 0:
        return float(f[0])
    lo, hi = np.log(f[i - 1]), np.log(f[i])
    t = (reference - y[i - 1]) / (y[i] - y[i - 1])
    return float(np.exp(lo + t * (hi - lo)))
