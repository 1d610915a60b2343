"""One optimiser step of pretraining methods on a fixed global batch, in 1 process or under Lightning DDP.

Run as a script for several processes (Lightning's ``ddp`` launcher re-runs this file for every rank)::

    python tests/methods/distributed_worker.py STORE OUT WORLD METHOD [METHOD ...]

or call :func:`run` in-process with ``world=1``. For every method it writes ``OUT/METHOD.rank{R}.pt``
holding, after the one step: the loss averaged over processes, every parameter's gradient as the
optimiser sees it (after DDP's all-reduce), and MoCo v2's queue; and ``OUT/METHOD.features.rank{R}.pt``,
the frozen features of the global batch after the step (data-parallel over the processes).

The global batch is the first ``GLOBAL_BATCH`` rows of the store; rank ``r`` of ``world`` processes
takes rows ``r::world`` (:class:`RankRows`, in place of Lightning's DistributedSampler, which shuffles).
Augmentation is switched off (identity crop, no flips, gains or noise): on-device augmentation draws
per-process random numbers, so with it the two runs would see different views.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from eossl.data.store import SampleStore
from eossl.methods import METHODS
from eossl.methods.config import PretrainConfig
from eossl.methods.distributed import GatheredSyncBatchNorm, rank, world_size
from eossl.models.features import encode

GLOBAL_BATCH = 16
SMALL = {
    "simclr": {"hidden_dim": 64, "projection_dim": 32},
    "moco-v2": {"hidden_dim": 64, "projection_dim": 32, "queue_size": 64},
}
NO_AUGMENTATION = {
    "crop_scale": (1.0, 1.0), "crop_ratio": (1.0, 1.0), "flip": False, "rotate90": False, "brightness": 0.0,
    "band_gain": 0.0, "contrast": 0.0, "haze": 0.0, "noise_std": 0.0, "sar_offset_db": 0.0, "sar_noise_db": 0.0,
}  # fmt: skip


class Rows(Dataset):
    """Samples ``{"s2": [C, H, W]}`` of a fixed tensor, in order."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"s2": self.images[index]}


class RankRows(Sampler[int]):
    """Rows ``rank::world_size`` of ``count``, the process's rank read when iterating (after DDP set up)."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return len(range(rank(), self.count, world_size()))

    def __iter__(self):
        return iter(range(rank(), self.count, world_size()))


class Capture(L.Callback):
    """Loss (mean over processes), gradients after the all-reduce and the queue, saved per rank."""

    def __init__(self, path: Path) -> None:
        self.path, self.record = path, {}

    def on_before_optimizer_step(self, trainer: L.Trainer, module: Any, optimizer: Any) -> None:
        self.record["grads"] = {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}

    def on_train_batch_end(self, trainer: L.Trainer, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.record["loss"] = trainer.strategy.reduce(outputs["loss"].detach(), reduce_op="mean")
        if hasattr(module, "queue"):
            self.record["queue"] = module.queue.detach().clone()
        torch.save(self.record, self.path.with_suffix(f".rank{trainer.global_rank}.pt"))


def run(store_path: str, out: str, world: int, methods: list[str]) -> None:
    """One step of each of ``methods`` on the global batch, over ``world`` CPU processes."""
    torch.set_num_threads(1)
    store = SampleStore(store_path)
    images = torch.from_numpy(store.read("s2", np.arange(GLOBAL_BATCH)).astype(np.float32) / 10000)
    for name in methods:
        L.seed_everything(0, verbose=False)
        cfg = PretrainConfig(
            data={"store": store_path, "batch_size": GLOBAL_BATCH // world},
            method={"name": name, **SMALL[name]},
            augment=NO_AUGMENTATION,
            trainer={"precision": "32-true", "accelerator": "cpu", "devices": world, "sync_batchnorm": world > 1},
        )
        stats = {"s2": store.stats["s2"]}
        model = METHODS[name](cfg.model_dump(mode="json"), [asdict(store.modalities["s2"])], stats)
        trainer = L.Trainer(
            max_steps=1,
            accelerator="cpu",
            devices=world,
            strategy="ddp" if world > 1 else "auto",
            plugins=[GatheredSyncBatchNorm()] if world > 1 else None,
            precision="32-true",
            use_distributed_sampler=False,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[Capture(Path(out) / f"{name}.pt")],
        )
        loader = DataLoader(Rows(images), batch_size=GLOBAL_BATCH // world, sampler=RankRows(GLOBAL_BATCH))
        trainer.fit(model, train_dataloaders=loader)
        # frozen features after the step, in batches of 5 (uneven shares: rank 0 encodes batches 0 and 2,
        # rank 1 batches 1 and 3, the last one of a single row): each process returns all 16 in order
        features = encode(model.encoder, model.normalizer, "s2", images, torch.device("cpu"), batch_size=5)
        torch.save(features, Path(out) / f"{name}.features.rank{rank()}.pt")


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:])
