"""Splits by location (no leakage between train/val/test) and nested, stratified label fractions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from eossl.errors import LabelFractionError, StoreError


def split_by_location(
    table: pd.DataFrame, val: float = 0.1, test: float = 0.2, seed: int = 0, group: str | None = None
) -> dict[str, np.ndarray]:
    """Assign whole places (all their dates) to train/val/test; returns sorted sample indices per split.

    ``group`` names the table column whose equal values are one place (a store's ``dates.group``);
    ``None``: ``location_id`` if the table has it, else every row is its own place.
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"split fractions val={val}, test={test} must be in [0, 1) and sum below 1")
    column = place_column(table, group)
    groups = table[column].to_numpy() if column is not None else np.arange(len(table))
    locations = np.unique(groups)
    shuffled = np.random.default_rng(seed).permutation(locations)
    n_test, n_val = round(test * len(locations)), round(val * len(locations))
    assignment = {
        "test": shuffled[:n_test],
        "val": shuffled[n_test : n_test + n_val],
        "train": shuffled[n_test + n_val :],
    }
    return {name: np.flatnonzero(np.isin(groups, locs)) for name, locs in assignment.items()}


SPLIT_NAMES = ("train", "val", "test")


def place_column(table: pd.DataFrame, group: str | None = None) -> str | None:
    """The table column whose equal values are one place: ``group`` (which must exist), else
    ``location_id`` if the table has it, else None (every row is its own place)."""
    if group is not None and group not in table.columns:
        raise StoreError(
            f"split by place: the metadata table has no column '{group}' to group rows by "
            f"(it has: {', '.join(map(str, table.columns))})"
        )
    return group if group is not None else "location_id" if "location_id" in table else None


def min_places(val: float, test: float) -> int:
    """The fewest places for which :func:`split_by_location` gives the training split and every split
    with a positive fraction at least one place each."""
    n = 1
    while n < 10**6:
        n_test, n_val = round(test * n), round(val * n)
        if (n_test or not test) and (n_val or not val) and n - n_test - n_val >= 1:
            return n
        n += 1
    return n


def _places(count: int, column: str | None) -> str:
    if column is None:
        return f"{count} sample{'s' * (count != 1)} (no 'location_id' column: each row is its own location)"
    return f"{count} location{'s' * (count != 1)} (column '{column}')"


def check_splits(splits: dict[str, np.ndarray], table: pd.DataFrame, store: str, needed: tuple[str, ...] = SPLIT_NAMES,
                 *, val: float, test: float, group: str | None = None, official: str | None = None,
                 purpose: str = "evaluation") -> None:  # fmt: skip
    """Raise a :class:`StoreError` naming the store, its number of places and the minimum needed when
    a split in ``needed`` is empty (``splits`` as :func:`split_by_location` or :func:`official_splits`
    gave them from ``table`` with ``val``/``test``; ``official``: the store's split column, if any)."""
    empty = [name for name in needed if len(splits.get(name, ())) == 0]
    if not empty:
        return
    column = place_column(table, group)
    wanted = "/".join(needed)
    unset = [name for name, share in (("val", val), ("test", test)) if name in empty and share == 0]
    if unset and official is None:
        raise StoreError(
            f"store '{store}': {purpose} needs a {unset[0]} split, but 'data.{unset[0]}' is 0: set it above 0"
        )
    if official is not None:
        train = table.iloc[splits.get("train", np.array([], dtype=np.int64))]
        count = train[column].nunique() if column is not None else len(train)
        carved = (
            f"; val is drawn from its {_places(count, column)} of training data at data.val {val:g} and needs "
            f"at least {min_places(val, 0.0)}"
            if "val" in empty and "train" not in empty and val > 0 else ""
        )  # fmt: skip
        raise StoreError(
            f"store '{store}': its split column '{official}' leaves {', '.join(empty)} without samples; "
            f"{purpose} needs samples in {wanted}{carved}"
        )
    count = table[column].nunique() if column is not None else len(table)
    raise StoreError(
        f"store '{store}' has {_places(count, column)}; {purpose} splits by location into {wanted} "
        f"(data.val {val:g}, data.test {test:g}) and needs at least {min_places(val, test)}"
    )


def check_split_column(store: str, table: pd.DataFrame, column: str) -> None:
    """The official split column exists and holds only ``train``, ``val`` and ``test`` (``train`` at least)."""
    if column not in table.columns:
        raise StoreError(f"store '{store}': split column '{column}' is not in the metadata table")
    found = set(table[column].astype(str))
    unknown = sorted(found - set(SPLIT_NAMES))
    if unknown:
        raise StoreError(f"store '{store}': split column '{column}' holds {unknown[:5]}, expected {SPLIT_NAMES}")
    if "train" not in found:
        raise StoreError(f"store '{store}': split column '{column}' has no 'train' rows")


def official_splits(
    table: pd.DataFrame, column: str, val: float = 0.1, seed: int = 0, group: str | None = None
) -> dict[str, np.ndarray]:
    """The dataset's own split from table column ``column``; sorted sample indices per split.

    Where the dataset has no validation split (only train and test), ``val`` of the training places
    (by ``group``, as :func:`split_by_location`) become the validation split. A dataset without a
    test split gets none carved out either: its ``test`` is empty and evaluation says so.
    """
    names = table[column].astype(str).to_numpy()
    splits = {name: np.flatnonzero(names == name) for name in SPLIT_NAMES}
    if len(splits["val"]) == 0 and val > 0:
        train = table.iloc[splits["train"]]
        inner = split_by_location(train.reset_index(drop=True), val=val, test=0.0, seed=seed, group=group)
        splits["val"] = splits["train"][inner["val"]]
        splits["train"] = splits["train"][inner["train"]]
    return splits


def _check_fraction(fraction: float) -> None:
    if not 0 < fraction <= 1:
        raise LabelFractionError(f"label fraction {fraction} must be in (0, 1]")


def _too_few_labels(fraction: float, n_candidates: int, wanted: int, needed: int, what: str) -> LabelFractionError:
    return LabelFractionError(
        f"label fraction {fraction:g} of {n_candidates} training samples gives {wanted} labels, "
        f"fewer than the {what}: use a fraction of at least "
        f"{needed / n_candidates:.3g} or more training data"
    )


def label_fraction(labels: np.ndarray, candidates: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Stratified subset of ``candidates`` holding ``fraction`` of them, at least one per class.

    For one seed, subsets are nested across fractions: each class keeps a fixed random order and a
    fraction takes its first ``max(1, round(fraction * n_class))`` members, which grows with the fraction.
    """
    _check_fraction(fraction)
    candidates = np.asarray(candidates)
    classes = np.unique(labels[candidates])
    wanted = round(fraction * len(candidates))
    if wanted < len(classes):
        raise _too_few_labels(fraction, len(candidates), wanted, len(classes), f"{len(classes)} classes present")
    rng = np.random.default_rng([seed, 7919])
    chosen = []
    for cls in classes:
        members = candidates[labels[candidates] == cls]
        order = rng.permutation(len(members))
        chosen.append(members[order[: max(1, round(fraction * len(members)))]])
    return np.sort(np.concatenate(chosen))


def multilabel_fraction(multilabel: np.ndarray, candidates: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Iteratively stratified multi-label subset of ``candidates`` holding ``round(fraction * len(candidates))``.

    ``multilabel`` is a 0/1 array ``[num_samples, num_classes]`` over the whole store, indexed by sample index
    like ``labels`` in :func:`label_fraction`; ``candidates`` are the sample indices to draw from (the training
    split). Returns the sorted chosen sample indices, exactly ``round(fraction * len(candidates))`` of them.

    The subset follows iterative stratification (Sechidis, Tsoumakas & Vlahavas, ECML-PKDD 2011): every class's
    share in the subset tracks its share in the candidates, and rare labels are served first. Samples with no
    positive label count as one more "no label" class so that their share is kept too.

    Unlike the original algorithm, which distributes all samples among folds at once, this one builds a single
    ordering of the candidates per seed, and a fraction takes its first ``n`` samples. That makes subsets of
    one seed nested across fractions (a smaller fraction is a prefix of a larger one), and every prefix is
    stratified because the ordering is built greedily, prefix by prefix:

    1. Coverage: while some class present among the candidates is not yet held, take the rarest such class
       and a random sample holding it, preferring samples that hold the most still-missing classes. These
       first samples are the shortest prefix holding every class; a fraction giving fewer samples raises
       :class:`LabelFractionError`.
    2. Balancing: with ``m`` samples taken, each class ``c`` targets ``(m + 1) * p_c`` (``p_c`` its share in the
       candidates). Take the class furthest below its target (ties: the one with fewer samples left), and
       among the samples left holding it, one that most reduces the squared deviation of all class counts from
       their targets (so its other labels should be under target too), ties broken at random.

    Randomness (``np.random.default_rng([seed, 7919])``) breaks ties and picks among samples with the same
    label set, so the subset is deterministic per seed and differs across seeds.
    """
    _check_fraction(fraction)
    multilabel = np.asarray(multilabel)
    if multilabel.ndim != 2:
        raise ValueError(f"multilabel must be a 2-D 0/1 array [num_samples, num_classes], got shape {multilabel.shape}")
    bad = ~np.isin(multilabel, (0, 1))
    if bad.any():
        raise ValueError(
            f"multilabel must hold only 0/1 values, got {np.unique(multilabel[bad])[:5].tolist()} "
            f"(in an array of shape {multilabel.shape})"
        )
    candidates = np.asarray(candidates)
    if candidates.size == 0:
        return np.array([], dtype=np.int64)
    if candidates.ndim != 1 or not np.issubdtype(candidates.dtype, np.integer):
        raise ValueError(
            f"candidates must be a 1-D array of integer sample indices, got shape {candidates.shape} "
            f"and dtype {candidates.dtype}"
        )
    if len(np.unique(candidates)) != len(candidates):
        raise ValueError("candidates must not repeat a sample index")
    wanted = round(fraction * len(candidates))
    rng = np.random.default_rng([seed, 7919])
    order, n_cover = _stratified_order(multilabel[candidates].astype(bool), rng, wanted)
    if wanted < n_cover:
        n_classes = int(multilabel[candidates].any(axis=0).sum())
        raise _too_few_labels(
            fraction,
            len(candidates),
            wanted,
            n_cover,
            f"{n_cover} samples needed to hold each of the {n_classes} classes present at least once",
        )
    return np.sort(candidates[order[:wanted]])


def _stratified_order(y: np.ndarray, rng: np.random.Generator, length: int) -> tuple[np.ndarray, int]:
    """First ``length`` rows (at least the coverage prefix) of a stratified ordering of the rows of boolean ``y``.

    Returns the row positions and the length of the coverage prefix. Only the first ``length`` entries are built:
    the ordering is greedy, so they do not depend on ``length``. Rows with the same label set are
    interchangeable, so the work is done on the distinct label sets ("patterns"), each holding a queue of its
    rows in random order.
    """
    n = len(y)
    present = y.any(axis=0)
    n_real = int(present.sum())
    y = y[:, present]
    aug = np.column_stack([y, ~y.any(axis=1)])  # last column: "no label"
    if not aug[:, -1].any():
        aug = aug[:, :-1]
    patterns, inverse, left = np.unique(aug, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    shuffled = rng.permutation(n)
    queue = shuffled[np.argsort(inverse[shuffled], kind="stable")]  # rows grouped by pattern, random within
    head = np.concatenate([[0], np.cumsum(left)[:-1]])
    holds = np.ascontiguousarray(patterns.T)  # holds[c]: which patterns hold class c
    pat = patterns.astype(np.float64)
    share = aug.sum(axis=0) / n
    class_left = aug.sum(axis=0).astype(np.int64)
    taken = np.zeros(aug.shape[1])
    alive = left > 0
    order = np.empty(n, dtype=np.int64)

    def take(among: np.ndarray, position: int) -> np.ndarray:
        """Put a random row left in the patterns ``among`` at ``position`` of the order; return its labels."""
        if len(among) == 1:
            chosen = among[0]
        else:
            weights = np.cumsum(left[among])
            chosen = among[np.searchsorted(weights, rng.integers(weights[-1]), side="right")]
        order[position] = queue[head[chosen]]
        head[chosen] += 1
        left[chosen] -= 1
        alive[chosen] = left[chosen] > 0
        labels = patterns[chosen]
        taken[labels] += 1
        class_left[labels] -= 1
        return labels

    step = 0
    missing = np.zeros(aug.shape[1], dtype=bool)
    missing[:n_real] = True
    while missing.any():
        rarest = np.flatnonzero(missing)[np.argmin(class_left[missing])]
        gain = np.where(holds[rarest] & alive, pat[:, missing].sum(axis=1), -1)
        missing &= ~take(np.flatnonzero(gain == gain.max()), step)
        step += 1
    n_cover = step

    for step in range(n_cover, min(length, n)):
        deficit = (step + 1) * share - taken
        open_deficit = np.where(class_left > 0, deficit, -np.inf)
        furthest = np.flatnonzero(open_deficit >= open_deficit.max() - 1e-9)
        cls = furthest[np.argmin(class_left[furthest])] if len(furthest) > 1 else furthest[0]
        # adding a row with labels a changes sum_j (deficit_j - a_j)^2 by -sum_j a_j (2 deficit_j - 1)
        score = np.where(holds[cls] & alive, pat @ (2 * deficit - 1), -np.inf)
        take(np.flatnonzero(score >= score.max() - 1e-9), step)
    return order[: max(length, n_cover)], n_cover
