"""Datasets and the Lightning DataModule: batches are ``dict[modality or target -> tensor]``.

Image modalities come out in physical units as float32 (S2 reflectance, S1 dB, DEM metres) with
nodata turned into NaN, so that normalisation and the missing-value policy live in one place
(:mod:`eossl.data.normalize`). Targets: ``label`` (majority class), ``multilabel`` (0/1 per class),
``mask`` (land-cover map) and ``tree_cover`` (fraction).

With ``dates > 1`` (temporal pairing, e.g. SeCo) a sample also holds ``dates - 1`` other scenes of
its place under ``"<modality>@<k>"`` and their rows under ``"index@<k>"`` (k = 1 .. dates - 1).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from eossl.data.splits import label_fraction, split_by_location
from eossl.data.store import SampleStore, StoreError

TARGETS = ("label", "multilabel", "mask", "tree_cover")
IN_MEMORY_LIMIT_BYTES = 4 * 1024**3


def _already_collated(batch: dict) -> dict:
    return batch


class TemporalPartners:
    """Draws, for rows of a split, other scenes (rows) of the same ``location_id`` in that split.

    Rows whose location has fewer than ``dates`` scenes in ``rows`` cannot be paired: they are left
    out of :attr:`rows` with a warning giving their count.
    """

    def __init__(self, store: SampleStore, rows: np.ndarray, dates: int) -> None:
        table = store.table
        if "location_id" not in table.columns:
            raise StoreError(
                f"store '{store.path}': temporal pairing (dates={dates}) needs a 'location_id' column in "
                f"its metadata table (it has: {', '.join(map(str, table.columns))})"
            )
        rows = np.asarray(rows)
        locations = table["location_id"].to_numpy()[rows]
        _, group, counts = np.unique(locations, return_inverse=True, return_counts=True)
        enough = counts[group] >= dates
        if not enough.any():
            raise StoreError(
                f"store '{store.path}': no location_id has {dates} scenes among the {len(rows)} rows of the "
                f"split (most: {counts.max(initial=0)}); temporal pairing needs dates <= scenes per location"
            )
        if not enough.all():
            warnings.warn(
                f"temporal pairing: {int((~enough).sum())} of {len(rows)} rows of store '{store.path}' left out, "
                f"their location_id has fewer than {dates} scenes in the split",
                stacklevel=3,
            )
        self.rows, self.dates = rows[enough], dates
        _, group, counts = np.unique(locations[enough], return_inverse=True, return_counts=True)
        order = np.argsort(group, kind="stable")
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])[group]
        # rows grouped by location; per row: where its location's group starts, its size, the row's place in it
        self._members, self._first, self._count = self.rows[order], first, counts[group]
        self._slot = np.empty_like(order)
        self._slot[order] = np.arange(len(order)) - first[order]

    def draw(self, positions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``[len(positions), dates - 1]`` rows: other scenes of each row's location, without replacement."""
        count, slot = self._count[positions], self._slot[positions]
        keys = rng.random((len(positions), int(count.max())))
        columns = np.arange(keys.shape[1])
        keys[(columns >= count[:, None]) | (columns == slot[:, None])] = np.inf  # not a member, or the row itself
        chosen = np.argsort(keys, axis=1)[:, : self.dates - 1]
        return self._members[self._first[positions, None] + chosen]


class StoreDataset(Dataset):
    """Samples ``indices`` of a store. Reads whole batches at once (``__getitems__``).

    ``dates > 1`` adds ``dates - 1`` other scenes of each sample's location (see :class:`TemporalPartners`),
    drawn afresh for every batch by a generator seeded from ``seed`` (and, in a loader worker, from the
    worker's seed, which the loader draws from torch's seeded generator for every epoch).
    """

    def __init__(
        self,
        store: SampleStore,
        indices: np.ndarray,
        modalities: list[str],
        targets: list[str],
        arrays: dict[str, np.ndarray] | None = None,
        dates: int = 1,
        seed: int = 0,
    ) -> None:
        for name in modalities:
            if name not in store.modalities:
                raise StoreError(
                    f"store '{store.path}' has no modality '{name}' (it has: {', '.join(store.modalities)})"
                )
        for name in targets:
            if name not in TARGETS:
                raise KeyError(f"unknown target '{name}' (known: {', '.join(TARGETS)})")
        if dates < 1:
            raise ValueError(f"dates must be at least 1 (scenes per sample), got {dates}")
        self.store, self.indices = store, np.asarray(indices)
        self.modalities, self.targets = list(modalities), list(targets)
        self.arrays = arrays or {}
        self.partners = TemporalPartners(store, self.indices, dates) if dates > 1 else None
        if self.partners is not None:
            self.indices = self.partners.rows
        self.seed = seed
        self._rng: tuple[int | None, np.random.Generator] | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def _read(self, name: str, rows: np.ndarray) -> np.ndarray:
        if name in self.arrays:
            return self.arrays[name][rows]
        return self.store.read(name, rows)

    def _generator(self) -> np.random.Generator:
        """This process's generator for partner draws: one per loader worker (and epoch), one in the main process."""
        info = get_worker_info()
        owner = None if info is None else info.seed
        if self._rng is None or self._rng[0] != owner:
            self._rng = (owner, np.random.default_rng([self.seed] if owner is None else [self.seed, owner]))
        return self._rng[1]

    def __getitems__(self, positions: list[int]) -> dict[str, torch.Tensor]:
        positions = np.asarray(positions)
        rows = self.indices[positions]
        scenes = [rows]
        if self.partners is not None:
            scenes += list(self.partners.draw(positions, self._generator()).T)
        batch: dict[str, torch.Tensor] = {}
        for name in self.modalities:
            modality = self.store.modalities[name]
            raw = self._read(name, np.concatenate(scenes))
            x = raw.astype(np.float32) / np.float32(modality.scale)
            if modality.nodata is not None:
                x[raw == modality.nodata] = np.nan
            for k, part in enumerate(torch.from_numpy(x).chunk(len(scenes))):
                batch[f"{name}@{k}" if k else name] = part
        table = self.store.table
        for name in self.targets:
            if name == "label":
                batch[name] = torch.from_numpy(table["label"].to_numpy()[rows].astype(np.int64))
            elif name == "tree_cover":
                batch[name] = torch.from_numpy(table["tree_cover"].to_numpy()[rows].astype(np.float32))
            elif name == "multilabel":
                batch[name] = torch.from_numpy(self._read("multilabel", rows).astype(np.float32))
            elif name == "mask":
                batch[name] = torch.from_numpy(self._read("lulc", rows)[:, 0].astype(np.int64))
        for k, scene_rows in enumerate(scenes):
            batch[f"index@{k}" if k else "index"] = torch.from_numpy(scene_rows.astype(np.int64))
        return batch

    def __getitem__(self, position: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([position]).items()}


def load_arrays(store: SampleStore, names: list[str], in_memory: bool | str = "auto") -> dict[str, np.ndarray]:
    """Load arrays into RAM when asked, or (``auto``) when they fit in ``IN_MEMORY_LIMIT_BYTES``."""
    if in_memory is False:
        return {}
    size = sum(store.array(n).nbytes for n in names)
    if in_memory == "auto" and size > IN_MEMORY_LIMIT_BYTES:
        return {}
    return {name: store.read(name) for name in names}


class EODataModule(L.LightningDataModule):
    """Train/val/test split by location; optional stratified label fraction of the training split.

    ``dates > 1``: every sample also holds ``dates - 1`` other scenes of its location from the same
    split (temporal positives, see :class:`StoreDataset`); ``seed`` seeds their draw.
    """

    def __init__(
        self,
        store: str | Path | SampleStore,
        modalities: list[str],
        targets: list[str] | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        val: float = 0.1,
        test: float = 0.2,
        split_seed: int = 0,
        fraction: float | None = None,
        fraction_seed: int = 0,
        in_memory: bool | str = "auto",
        dates: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.dates, self.seed = dates, seed
        self.store = store if isinstance(store, SampleStore) else SampleStore(store)
        self.modalities, self.targets = list(modalities), list(targets or [])
        self.batch_size, self.num_workers = batch_size, num_workers
        self.splits = split_by_location(self.store.table, val=val, test=test, seed=split_seed)
        if fraction is not None:
            labels = self.store.table["label"].to_numpy()
            self.splits["train"] = label_fraction(labels, self.splits["train"], fraction, fraction_seed)
        # arrays behind array-valued targets (label and tree_cover come from the metadata table)
        target_arrays = {"multilabel": "multilabel", "mask": "lulc"}
        needed = self.modalities + [target_arrays[t] for t in self.targets if t in target_arrays]
        self.arrays = load_arrays(self.store, needed, in_memory)

    def dataset(self, split: str) -> StoreDataset:
        return StoreDataset(
            self.store, self.splits[split], self.modalities, self.targets, self.arrays, self.dates, self.seed
        )

    def _loader(self, split: str, shuffle: bool, drop_last: bool = False) -> DataLoader:
        dataset = self.dataset(split)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=drop_last and len(dataset) > self.batch_size,
            num_workers=self.num_workers,
            collate_fn=_already_collated,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
