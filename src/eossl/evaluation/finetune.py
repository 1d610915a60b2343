"""Full fine-tuning: encoder + linear head trained end to end on the labelled subset.

The encoder gets a lower learning rate than the head (``encoder_lr_factor``), the schedule is linear
warmup then cosine, and training runs a fixed number of steps derived from the subset size
(``epochs`` passes, clipped to ``[min_steps, max_steps]``) so small fractions are not under-trained.
Augmentation during fine-tuning is spatial only (flips, 90-degree rotations).
"""

from __future__ import annotations

import copy
import math

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from eossl.config import FinetuneProtocolConfig
from eossl.data.augment import AugmentConfig, MultiModalAugment
from eossl.data.modality import Modality
from eossl.data.normalize import BandNormalizer
from eossl.training import bf16_autocast, resolve_precision

SPATIAL_ONLY = AugmentConfig(crop_scale=(1.0, 1.0), brightness=0, band_gain=0, contrast=0, haze=0, noise_std=0)


class FinetuneClassifier(L.LightningModule):
    def __init__(
        self,
        encoder: nn.Module,
        normalizer: BandNormalizer,
        modality: Modality,
        multilabel: bool,
        num_outputs: int,
        cfg: FinetuneProtocolConfig,
        total_steps: int,
    ) -> None:
        super().__init__()
        self.encoder, self.normalizer, self.modality = encoder, normalizer, modality.name
        self.head = nn.Linear(int(encoder.num_features), num_outputs)
        self.augment = MultiModalAugment({modality.name: modality}, SPATIAL_ONLY)
        self.loss_fn = nn.BCEWithLogitsLoss() if multilabel else nn.CrossEntropyLoss()
        self.cfg, self.total_steps = cfg, total_steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = self.normalizer(self.normalizer.fill_invalid({self.modality: x}))
        return self.head(self.encoder(batch[self.modality]))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        x = self.augment({self.modality: x})[self.modality]
        loss = self.loss_fn(self(x), y)
        self.log("finetune/loss", loss)
        return loss

    def configure_optimizers(self):
        groups = [
            {"params": self.encoder.parameters(), "lr": self.cfg.lr * self.cfg.encoder_lr_factor},
            {"params": self.head.parameters(), "lr": self.cfg.lr},
        ]
        optimizer = torch.optim.AdamW(groups, weight_decay=self.cfg.weight_decay)
        warmup = max(1, self.total_steps // 10)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, self.total_steps - warmup))))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def finetune_steps(num_labelled: int, cfg: FinetuneProtocolConfig) -> int:
    per_epoch = math.ceil(num_labelled / cfg.batch_size)
    return int(min(max(cfg.epochs * per_epoch, cfg.min_steps), cfg.max_steps))


def finetune(
    encoder: nn.Module,
    normalizer: BandNormalizer,
    modality: Modality,
    images: torch.Tensor,
    targets: torch.Tensor,
    multilabel: bool,
    num_outputs: int,
    cfg: FinetuneProtocolConfig,
    accelerator: str = "auto",
    seed: int = 0,
) -> FinetuneClassifier:
    """Fine-tune a copy of ``encoder`` with a new head; returns the trained model (eval mode, on CPU)."""
    L.seed_everything(seed, verbose=False)
    steps = finetune_steps(len(images), cfg)
    model = FinetuneClassifier(
        copy.deepcopy(encoder), copy.deepcopy(normalizer), modality, multilabel, num_outputs, cfg, steps
    )
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        TensorDataset(images, targets.float() if multilabel else targets.long()),
        batch_size=min(cfg.batch_size, len(images)),
        shuffle=True,
        generator=generator,
        drop_last=len(images) > cfg.batch_size,
    )
    trainer = L.Trainer(
        max_steps=steps,
        max_epochs=-1,
        accelerator=accelerator,
        precision=resolve_precision("auto", accelerator),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model.train()  # the source encoder may be in eval mode (feature extraction); Lightning keeps module modes
    trainer.fit(model, loader)
    return model.cpu().eval()


@torch.no_grad()
def predict(
    model: FinetuneClassifier, images: torch.Tensor, device: torch.device, batch_size: int = 512
) -> torch.Tensor:
    model = model.to(device).eval()
    with bf16_autocast(device):
        out = [model(images[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)]
    model.cpu()
    return torch.cat(out)
