"""Datasets and the Lightning DataModule: batches are ``dict[modality or target -> tensor]``.

Image modalities come out in physical units as float32 (S2 reflectance, S1 dB, DEM metres) with
nodata turned into NaN, so that normalisation and the missing-value policy live in one place
(:mod:`eossl.data.normalize`). Targets: ``label`` (majority class), ``multilabel`` (0/1 per class),
``mask`` (land-cover map) and ``tree_cover`` (fraction).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from eossl.data.splits import label_fraction, split_by_location
from eossl.data.store import SampleStore, StoreError

TARGETS = ("label", "multilabel", "mask", "tree_cover")
IN_MEMORY_LIMIT_BYTES = 4 * 1024**3


def _already_collated(batch: dict) -> dict:
    return batch


class StoreDataset(Dataset):
    """Samples ``indices`` of a store. Reads whole batches at once (``__getitems__``)."""

    def __init__(
        self,
        store: SampleStore,
        indices: np.ndarray,
        modalities: list[str],
        targets: list[str],
        arrays: dict[str, np.ndarray] | None = None,
    ) -> None:
        for name in modalities:
            if name not in store.modalities:
                raise StoreError(
                    f"store '{store.path}' has no modality '{name}' (it has: {', '.join(store.modalities)})"
                )
        for name in targets:
            if name not in TARGETS:
                raise KeyError(f"unknown target '{name}' (known: {', '.join(TARGETS)})")
        self.store, self.indices = store, np.asarray(indices)
        self.modalities, self.targets = list(modalities), list(targets)
        self.arrays = arrays or {}

    def __len__(self) -> int:
        return len(self.indices)

    def _read(self, name: str, rows: np.ndarray) -> np.ndarray:
        if name in self.arrays:
            return self.arrays[name][rows]
        return self.store.read(name, rows)

    def __getitems__(self, positions: list[int]) -> dict[str, torch.Tensor]:
        rows = self.indices[np.asarray(positions)]
        batch: dict[str, torch.Tensor] = {}
        for name in self.modalities:
            modality = self.store.modalities[name]
            raw = self._read(name, rows)
            x = raw.astype(np.float32) / np.float32(modality.scale)
            if modality.nodata is not None:
                x[raw == modality.nodata] = np.nan
            batch[name] = torch.from_numpy(x)
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
        batch["index"] = torch.from_numpy(rows.astype(np.int64))
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
    """Train/val/test split by location; optional stratified label fraction of the training split."""

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
    ) -> None:
        super().__init__()
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
        return StoreDataset(self.store, self.splits[split], self.modalities, self.targets, self.arrays)

    def _loader(self, split: str, shuffle: bool, drop_last: bool = False) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=self.num_workers,
            collate_fn=_already_collated,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        drop = len(self.splits["train"]) > self.batch_size
        return self._loader("train", shuffle=True, drop_last=drop)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
