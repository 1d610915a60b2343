"""Labelled data as the trained protocols read it: dict batches with ``"input"`` (images in physical
units) and one tensor per target name, from the store (:mod:`eossl.evaluation.data`) or from tensors."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch.utils.data import DataLoader, Dataset

INPUT = "input"
"""Batch key of the (stacked) image input; targets are under their target names."""


def identity(batch: dict) -> dict:
    return batch


class TensorBatches(Dataset):
    """In-memory labelled data as the trained protocols read it: ``__getitems__`` gives a dict batch
    with ``"input"`` (images in physical units) and one tensor per target name."""

    def __init__(self, images: torch.Tensor, targets: Mapping[str, torch.Tensor]) -> None:
        for name, values in targets.items():
            if len(values) != len(images):
                raise ValueError(f"target '{name}' has {len(values)} rows for {len(images)} images")
        self.images, self.targets = images, dict(targets)

    def __len__(self) -> int:
        return len(self.images)

    def __getitems__(self, positions: list[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(positions, dtype=torch.long)
        return {INPUT: self.images[index], **{k: v[index] for k, v in self.targets.items()}}


def batch_loader(
    data: Dataset, batch_size: int, shuffle: bool = False, seed: int = 0, drop_last: bool = False
) -> DataLoader:
    """A loader of ``data`` (a dataset with ``__getitems__`` giving dict batches), shuffled reproducibly."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last,
                      collate_fn=identity)  # fmt: skip


def in_batches(images: torch.Tensor, batch_size: int = 256) -> Iterator[torch.Tensor]:
    """``images`` in consecutive batches (for :func:`predict_tasks` on tensors in memory)."""
    return (images[i : i + batch_size] for i in range(0, len(images), batch_size))
