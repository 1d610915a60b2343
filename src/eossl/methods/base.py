"""The shared base of pretraining methods: encoder, on-device views, optimiser and schedule, health logs."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from eossl.data.augment import AugmentConfig, MultiModalAugment
from eossl.data.modality import Modality
from eossl.data.normalize import BandNormalizer
from eossl.models.encoders import build_encoder, check_input_bands


class PretrainMethod(L.LightningModule):
    """Subclasses define ``training_step`` from :meth:`views` and :attr:`encoder`.

    Hyperparameters saved in the checkpoint hold everything needed to rebuild the encoder and its
    input normalisation without the store (see :func:`eossl.methods.load_pretrained_encoder`).
    """

    def __init__(self, config: dict[str, Any], modality: dict[str, Any], stats: dict[str, list[float]]) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = config
        self.modality_name = modality["name"]
        spec = Modality(**{k: tuple(v) if isinstance(v, list) else v for k, v in modality.items()})
        enc = config["encoder"]
        self.encoder = build_encoder(enc["name"], spec.num_bands, enc["stem"], enc.get("output_stride", 32))
        self.normalizer = BandNormalizer({self.modality_name: stats}, [self.modality_name])
        self.augment = MultiModalAugment({self.modality_name: spec}, AugmentConfig(**config["augment"]))

    @property
    def num_features(self) -> int:
        return int(self.encoder.num_features)

    def views(self, batch: dict[str, torch.Tensor], count: int = 2) -> list[torch.Tensor]:
        """``count`` independently augmented, normalised views of the batch's modality."""
        x = batch[self.modality_name]
        check_input_bands(self.encoder, x, self.modality_name)
        filled = self.normalizer.fill_invalid({self.modality_name: x})
        self.log("train/filled_values", float(self.normalizer.filled[self.modality_name]), reduce_fx="max")
        return [self.normalizer(self.augment(filled))[self.modality_name] for _ in range(count)]

    def log_embedding_health(self, z: torch.Tensor) -> None:
        """Mean per-dimension std of L2-normalised embeddings: ~1/sqrt(d) when healthy, ~0 when collapsed."""
        z = torch.nn.functional.normalize(z.detach().float(), dim=1)
        self.log("train/embedding_std", z.std(dim=0).mean(), prog_bar=True)

    def configure_optimizers(self) -> dict[str, Any]:
        opt = self.cfg["optim"]
        params = list(self.parameters())
        if opt["optimizer"] == "adamw":
            optimizer = torch.optim.AdamW(params, lr=opt["lr"], weight_decay=opt["weight_decay"])
        elif opt["optimizer"] == "sgd":
            optimizer = torch.optim.SGD(params, lr=opt["lr"], momentum=0.9, weight_decay=opt["weight_decay"])
        else:
            from lightly.utils.lars import LARS

            optimizer = LARS(params, lr=opt["lr"], momentum=0.9, weight_decay=opt["weight_decay"])
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(opt["warmup_fraction"] * total)

        def lr_factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
