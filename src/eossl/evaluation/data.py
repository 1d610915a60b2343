"""The evaluation's data access: tasks resolved from the store's declared targets, the splits, the
labelled subsets, and batches of any modality combination streamed from the store.

Nothing is loaded whole: every split is read batch by batch through :class:`~eossl.data.datamodule.StoreDataset`
(with ``data.in_memory`` deciding, as for pretraining, whether the store's arrays are held in RAM
first), a combination of modalities is stacked per batch, and the metadata modality (``meta``) is made
of constant planes per batch. Only per-sample vectors (features, pooled targets, predictions) are kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from eossl.data.datamodule import EODataModule, StoreDataset
from eossl.data.metadata import (
    METADATA_MODALITY,
    constant_planes,
    metadata_encoding,
    metadata_modality,
    stacked_modality,
)
from eossl.data.modality import Modality
from eossl.data.splits import check_splits
from eossl.data.store import SampleStore
from eossl.data.targets import Pair, Target
from eossl.errors import ConfigError, MetadataError
from eossl.evaluation.batches import INPUT, identity
from eossl.evaluation.registry import TASK_KINDS
from eossl.evaluation.tasks._base import DenseOptions, Task

if TYPE_CHECKING:
    from eossl.evaluation.config import EvaluateBase


def _num_classes(store: SampleStore, target: Target) -> int:
    """Declared classes, else the store's class names, else counted from the values (pooled targets)."""
    if target.num_classes:
        return target.num_classes
    if not TASK_KINDS[target.kind].classes:
        return 0
    if store.class_names:
        return len(store.class_names)
    if target.kind == "multi-label":
        return int(store.array(target.array).shape[-1])
    values = store.table[target.column].to_numpy() if target.column is not None else store.read(target.array)
    if target.ignore_index is not None:
        values = values[values != target.ignore_index]
    return int(values.max()) + 1 if values.size else 0


def resolve_tasks(requested: list[str], store: SampleStore, explicit: bool = True,
                  options: DenseOptions | None = None) -> list[Task]:  # fmt: skip
    """The tasks named in ``requested``: each a declared target name or a kind with exactly one target of
    it in the store. With ``explicit`` False (the default task list), kinds the store lacks are left out.
    ``options``: how dense tasks are learned and scored."""
    tasks = []
    for name in requested:
        if name in store.targets:
            target = store.targets[name]
        elif name in TASK_KINDS:
            matching = store.targets_of_kind(name)
            if not matching and not explicit:
                continue
            if len(matching) != 1:
                found = ", ".join(t.name for t in matching) or "none"
                raise ConfigError(
                    f"'tasks': '{name}' is a task kind, and store '{store.path}' declares {len(matching)} targets of "
                    f"it ({found}): name the target instead (declared: {', '.join(store.targets) or 'none'})"
                )
            target = matching[0]
        else:
            raise ConfigError(
                f"'tasks': '{name}' is neither a target of store '{store.path}' (it declares: "
                f"{', '.join(store.targets) or 'none'}) nor a task kind ({', '.join(TASK_KINDS.names())})"
            )
        if target.kind not in TASK_KINDS:
            raise ConfigError(
                f"'tasks': target '{target.name}' is of kind '{target.kind}', which has no evaluation task yet "
                f"(evaluated kinds: {', '.join(TASK_KINDS.names())})"
            )
        tasks.append(Task(name, TASK_KINDS[target.kind](options), target, _num_classes(store, target)))
    if not tasks:
        raise ConfigError(
            f"'tasks': store '{store.path}' declares none of the default tasks ({', '.join(requested)}); "
            f"name its targets ({', '.join(store.targets) or 'none declared'})"
        )
    return tasks


def task_pairs(store: SampleStore, tasks: list[Task]) -> dict[tuple[str, str], Pair]:
    """The store pairs (by their two modalities) whose change targets are among the pair tasks of ``tasks``."""
    pairs: dict[tuple[str, str], Pair] = {}
    for task in (t for t in tasks if t.kind.pairs):
        found = [p for p in store.pairs.values() if p.target == task.target.name]
        if not found:
            declared = ", ".join(f"{p.name} ({p.before} -> {p.after}, {p.target})" for p in store.pairs.values())
            raise ConfigError(
                f"'tasks': '{task.name}' is a {task.kind.name} task on target '{task.target.name}', but store "
                f"'{store.path}' declares no pair of two dates with that target (pairs: {declared or 'none'})"
            )
        pairs.update({(p.before, p.after): p for p in found})
    return pairs


class CombinationDataset(Dataset):
    """Rows of a store as the evaluation reads them: ``"input"`` (the combination's modalities stacked
    in order, physical units), the requested targets by name and ``"index"`` (store rows). ``absent``:
    a modality of the combination blanked (NaN) for every sample (the missing-sensor test)."""

    def __init__(self, data: EvalData, combo: tuple[str, ...], rows: np.ndarray, targets: list[str],
                 absent: str | None = None) -> None:  # fmt: skip
        self.data, self.combo, self.absent = data, combo, absent
        images = [m for m in combo if m != METADATA_MODALITY]
        self.inner = StoreDataset(data.store, rows, images, targets, data.dm.arrays)

    def __len__(self) -> int:
        return len(self.inner)

    def __getitems__(self, positions: list[int]) -> dict[str, torch.Tensor]:
        batch = self.inner.__getitems__(positions)
        rows = batch.pop("index")
        parts = []
        for name in self.combo:
            part = batch.pop(name) if name != METADATA_MODALITY else self.data.metadata_planes(rows.numpy())
            parts.append(torch.full_like(part, float("nan")) if name == self.absent else part)
        return {INPUT: torch.cat(parts, dim=1) if len(parts) > 1 else parts[0], **batch, "index": rows}


class EvalData:
    """Store, splits, tasks and streamed batches of one evaluation (see the module docstring)."""

    def __init__(self, cfg: EvaluateBase) -> None:
        store = SampleStore(cfg.data.store)
        self.tasks = resolve_tasks(cfg.tasks, store, explicit=cfg.tasks_explicit, options=cfg.dense.options())
        self.pairs = task_pairs(store, self.tasks)
        self.combos = cfg.combinations()
        if cfg.modalities is None and self.pairs:  # change tasks run on their pairs' dates
            pair_combos = [(p.before, p.after) for p in self.pairs.values()]
            self.combos = pair_combos if all(t.kind.pairs for t in self.tasks) else self.combos + pair_combos
        wanted = list(dict.fromkeys(m for combo in self.combos for m in combo))
        self.images = [m for m in wanted if m != METADATA_MODALITY]
        for name in self.images:
            if name not in store.modalities:
                raise ConfigError(f"'modalities': store '{store.path}' has no modality '{name}' "
                                  f"(it has: {', '.join(store.modalities)})")  # fmt: skip
            if not store.modalities[name].continuous:
                raise ConfigError(f"'modalities': '{name}' is {store.modalities[name].kind}, not image bands")
        targets = sorted({t.target.name for t in self.tasks} | {t.stratify for t in self.tasks})
        for name in targets:
            store.target(name)  # a strata target that is not declared fails here, by name
        self.dm = EODataModule(
            store, self.images, targets=targets, val=cfg.data.val, test=cfg.data.test,
            split_seed=cfg.data.split_seed, in_memory=cfg.data.in_memory,
        )  # fmt: skip
        self.store, self.splits = store, self.dm.splits
        check_splits(self.splits, store.table, str(store.path), val=cfg.data.val, test=cfg.data.test,
                     group=store.dates.group if store.dates is not None else None, official=store.split)  # fmt: skip
        self.modalities: dict[str, Modality] = dict(store.modalities)
        self.stats: dict[str, dict[str, list[float]]] = dict(store.stats)
        first = self.images[0] if self.images else next(iter(store.modalities))
        self.image_size = int(store.array(first).shape[-1])
        self._metadata: np.ndarray | None = None
        if METADATA_MODALITY in wanted:
            try:
                values, names = metadata_encoding(store.table, cfg.fusion.metadata)
            except MetadataError as exc:
                raise ConfigError(f"'fusion.metadata': {exc}") from None
            self._metadata = values
            self.modalities[METADATA_MODALITY] = metadata_modality(names)
            self.stats[METADATA_MODALITY] = {"mean": [0.0] * len(names), "std": [1.0] * len(names)}

    # -- combinations ------------------------------------------------------------------------------
    def pair_of(self, combo: tuple[str, ...]) -> Pair | None:
        """The store pair whose two dates ``combo`` is, for the evaluated change tasks (else None)."""
        return self.pairs.get(combo) if len(combo) == 2 else None

    def modality(self, combo: tuple[str, ...]) -> Modality:
        """The input modality of a combination: the modality itself, or the stacked virtual modality."""
        name = "+".join(combo)
        if len(combo) == 1:
            return self.modalities[name]
        return stacked_modality(name, [self.modalities[m] for m in combo])

    def channels(self, combo: tuple[str, ...]) -> dict[str, int]:
        return {m: self.modalities[m].num_bands for m in combo}

    def metadata_planes(self, rows: np.ndarray) -> torch.Tensor:
        """The ``meta`` modality of store ``rows``: one constant plane per encoded metadata value."""
        return torch.from_numpy(constant_planes(self._metadata[rows], self.image_size))

    # -- reading -----------------------------------------------------------------------------------
    def rows(self, split: str, positions: np.ndarray | None = None) -> np.ndarray:
        """Store rows of a split (or of ``positions`` within it)."""
        rows = self.splits[split]
        return rows if positions is None else rows[positions]

    def dataset(self, split: str, combo: tuple[str, ...], targets: list[str] = (), positions: np.ndarray | None = None,
                absent: str | None = None) -> CombinationDataset:  # fmt: skip
        return CombinationDataset(self, combo, self.rows(split, positions), list(targets), absent)

    def inputs(self, split: str, combo: tuple[str, ...], batch_size: int = 512, absent: str | None = None,
               positions: np.ndarray | None = None) -> Iterator[torch.Tensor]:  # fmt: skip
        """The split's stacked inputs, in order, ``batch_size`` at a time."""
        loader = DataLoader(self.dataset(split, combo, (), positions, absent), batch_size=batch_size,
                            collate_fn=identity)  # fmt: skip
        return (batch[INPUT] for batch in loader)

    def target(self, split: str, task: Task) -> torch.Tensor:
        """A pooled task's target over a whole split (small: one value or vector per sample)."""
        return self.dm.read_split(split, [task.target.name])[task.target.name]
