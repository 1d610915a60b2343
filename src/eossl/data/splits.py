"""Splits by location (no leakage between train/val/test) and nested, stratified label fractions."""

from __future__ import annotations

import numpy as np
import pandas as pd


class LabelFractionError(ValueError):
    """A label fraction cannot be drawn as asked."""


def split_by_location(table: pd.DataFrame, val: float = 0.1, test: float = 0.2, seed: int = 0) -> dict[str, np.ndarray]:
    """Assign whole locations (all their dates) to train/val/test; returns sorted sample indices per split."""
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"split fractions val={val}, test={test} must be in [0, 1) and sum below 1")
    groups = table["location_id"].to_numpy() if "location_id" in table else np.arange(len(table))
    locations = np.unique(groups)
    shuffled = np.random.default_rng(seed).permutation(locations)
    n_test, n_val = round(test * len(locations)), round(val * len(locations))
    assignment = {
        "test": shuffled[:n_test],
        "val": shuffled[n_test : n_test + n_val],
        "train": shuffled[n_test + n_val :],
    }
    return {name: np.flatnonzero(np.isin(groups, locs)) for name, locs in assignment.items()}


def label_fraction(labels: np.ndarray, candidates: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Stratified subset of ``candidates`` holding ``fraction`` of them, at least one per class.

    For one seed, subsets are nested across fractions: each class keeps a fixed random order and a
    fraction takes its first ``max(1, round(fraction * n_class))`` members, which grows with the fraction.
    """
    if not 0 < fraction <= 1:
        raise LabelFractionError(f"label fraction {fraction} must be in (0, 1]")
    candidates = np.asarray(candidates)
    classes = np.unique(labels[candidates])
    wanted = round(fraction * len(candidates))
    if wanted < len(classes):
        raise LabelFractionError(
            f"label fraction {fraction:g} of {len(candidates)} training samples gives {wanted} labels, "
            f"fewer than the {len(classes)} classes present: use a fraction of at least "
            f"{len(classes) / len(candidates):.3g} or more training data"
        )
    rng = np.random.default_rng([seed, 7919])
    chosen = []
    for cls in classes:
        members = candidates[labels[candidates] == cls]
        order = rng.permutation(len(members))
        chosen.append(members[order[: max(1, round(fraction * len(members)))]])
    return np.sort(np.concatenate(chosen))
