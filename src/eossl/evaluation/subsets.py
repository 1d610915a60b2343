"""Labelled subsets: for every label fraction and seed, one nested, stratified subset of the training
split per stratification target, shared by every init and protocol (and saved to ``label_subsets.json``).

How a target stratifies depends on its kind (:attr:`TaskKind.stratify`): by class (single-label), by
class presence with iterative stratification (multi-label, segmentation: the classes present in the
mask), or by quantile bins of the value (regression targets that declare no ``strata``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from eossl.data.splits import label_fraction, multilabel_fraction
from eossl.data.store import SampleStore
from eossl.data.targets import Target
from eossl.errors import LabelFractionError
from eossl.evaluation.registry import TASK_KINDS
from eossl.evaluation.tasks._base import Task
from eossl.io import write_text_atomic

QUANTILE_BINS = 10


def _presence(store: SampleStore, target: Target, num_classes: int, block: int = 256) -> np.ndarray:
    """``[N, C]`` 0/1: the classes present in each sample of a multi-label or dense class target."""
    if target.kind == "multi-label":
        return store.read(target.array)
    array = store.array(target.array)
    out = np.zeros((len(store), num_classes), dtype=np.uint8)
    for start in range(0, len(store), block):
        masks = array[start : start + block].reshape(min(block, len(store) - start), -1)
        for i, mask in enumerate(masks):
            values = mask[(mask >= 0) & (mask < num_classes)] if target.ignore_index is None else mask[
                (mask != target.ignore_index) & (mask >= 0) & (mask < num_classes)]  # fmt: skip
            out[start + i, np.unique(values).astype(np.int64)] = 1
    return out


def _values(store: SampleStore, target: Target) -> np.ndarray:
    """One value per sample: the column, or a dense target's mean over its pixels."""
    if target.column is not None:
        return store.table[target.column].to_numpy()
    return store.read(target.array).reshape(len(store), -1).astype(np.float64).mean(axis=1)


def _places(store: SampleStore) -> np.ndarray:
    """The place of every sample: the declared dates group, else ``location_id``, else the sample itself."""
    group = store.dates.group if store.dates is not None else "location_id"
    if group in store.table:
        return store.table[group].to_numpy()
    return np.arange(len(store))


def place_fraction(places: np.ndarray, has_class: np.ndarray, train: np.ndarray, fraction: float,
                   seed: int) -> np.ndarray:  # fmt: skip
    """Training samples of a nested, stratified ``fraction`` of the training places (``has_class``: per
    sample, whether it holds class 1; a place holds it when any of its samples does)."""
    names, inverse = np.unique(places[train], return_inverse=True)
    holds = np.zeros(len(names), dtype=np.int64)
    np.maximum.at(holds, inverse, has_class[train].astype(np.int64))
    chosen = label_fraction(holds, np.arange(len(names)), fraction, seed)
    return np.sort(train[np.isin(inverse, chosen)])


def _bins(values: np.ndarray) -> np.ndarray:
    edges = np.unique(np.quantile(values, np.linspace(0, 1, QUANTILE_BINS + 1)[1:-1]))
    return np.digitize(values, edges)


class LabelSubsets:
    """The subsets of one evaluation, drawn up front (a bad fraction fails before any training)."""

    def __init__(self, store: SampleStore, train: np.ndarray, tasks: list[Task], fractions: list[float],
                 seeds: list[int]) -> None:  # fmt: skip
        position = {g: i for i, g in enumerate(train)}
        strata = {t.stratify: t for t in tasks}
        self.sample_ids: dict[tuple[str, float, int], np.ndarray] = {}
        for name, task in strata.items():
            target = store.target(name)
            how = TASK_KINDS[target.kind].stratify
            num_classes = task.num_classes if name == task.target.name else target.num_classes or task.num_classes
            if how == "places":
                holds = _presence(store, target, max(num_classes, 2))[:, 1]
                places = _places(store)
                draw = lambda f, s, p=places, h=holds: place_fraction(p, h, train, f, s)  # noqa: E731
            elif how == "presence":
                presence = _presence(store, target, num_classes)
                draw = lambda f, s, p=presence: multilabel_fraction(p, train, f, s)  # noqa: E731
            else:
                labels = _values(store, target)
                labels = _bins(labels) if how == "bins" else labels
                draw = lambda f, s, y=labels: label_fraction(y, train, f, s)  # noqa: E731
            for fraction in fractions:
                for seed in seeds:
                    drawn = self.sample_ids[name, fraction, seed] = draw(fraction, seed)
                    if len(drawn) == 0:
                        raise LabelFractionError(
                            f"label fraction {fraction:g} of the {len(train)} training samples gives no labelled "
                            f"sample for target '{name}' (seed {seed}): use a larger fraction or more training data"
                        )
        self.positions = {key: np.array([position[g] for g in idx]) for key, idx in self.sample_ids.items()}

    def __call__(self, task: Task, fraction: float, seed: int) -> np.ndarray:
        """Positions within the training split of ``task``'s subset at ``fraction`` and ``seed``."""
        return self.positions[task.stratify, fraction, seed]

    def save(self, path: Path, split_seed: int) -> None:
        """``label_subsets.json``: the store sample indices of every subset, per stratification target."""
        saved: dict = {}
        for (stratify, fraction, seed), idx in self.sample_ids.items():
            saved.setdefault(stratify, {}).setdefault(f"{fraction:g}", {})[str(seed)] = idx.tolist()
        write_text_atomic(path, json.dumps({"split_seed": split_seed, "subsets": saved}))
