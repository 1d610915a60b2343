"""The shared base of pretraining methods: encoder, on-device views, schedules, optimiser.

A method = pairing x objective x encoder. The base owns the encoder and the pairing
(:meth:`PretrainMethod.views`): by augmentation (two augmentations of one scene) or, with
``method.pairing: temporal``, temporal (the scene and another date of its place, each augmented);
a subclass adds its heads and writes ``training_step`` as the paper's pseudo-code. Health (collapse,
rank, kNN) is watched from outside by :class:`eossl.methods.health.HealthMonitor`, so every method is
monitored the same way.
"""

from __future__ import annotations

import copy
import math
from typing import Any, ClassVar

import lightning as L
import torch
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from eossl.config import ConfigError
from eossl.data.augment import AugmentConfig, MultiModalAugment
from eossl.data.modality import Modality
from eossl.data.normalize import BandNormalizer
from eossl.models.encoders import check_input_bands, encoder_from_config, is_vision_transformer


class PretrainMethod(L.LightningModule):
    """Subclasses define ``training_step`` from :meth:`views` and :attr:`encoder`.

    Hyperparameters saved in the checkpoint hold everything needed to rebuild the encoder and its
    input normalisation without the store (see :func:`eossl.methods.load_pretrained_encoder`).
    """

    uses_local_views: ClassVar[bool] = False

    def __init__(self, config: dict[str, Any], modality: dict[str, Any], stats: dict[str, list[float]]) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = config
        self.hp = config["method"]
        self.modality_name = modality["name"]
        spec = Modality(**{k: tuple(v) if isinstance(v, list) else v for k, v in modality.items()})
        augment = AugmentConfig(**config["augment"])
        if augment.local_views and not self.uses_local_views:
            raise ConfigError(f"'augment.local_views': method '{self.hp['name']}' does not use multi-crop views")
        multi_size = augment.local_views > 0 and is_vision_transformer(config["encoder"]["name"])
        self.encoder = encoder_from_config(config["encoder"], spec.num_bands, dynamic_img_size=multi_size)
        self.normalizer = BandNormalizer({self.modality_name: stats}, [self.modality_name])
        self.augment = MultiModalAugment({self.modality_name: spec}, augment)

    @property
    def num_features(self) -> int:
        return int(self.encoder.num_features)

    # -- pairing ------------------------------------------------------------------------------------
    def scenes(self, batch: dict[str, torch.Tensor], count: int = 1) -> list[torch.Tensor]:
        """The sample's scene and ``count - 1`` other dates of its place (keys ``s2``, ``s2@1``, ...),
        in physical units with invalid values filled."""
        name = self.modality_name
        keys = [name] + [f"{name}@{k}" for k in range(1, count)]
        missing = [k for k in keys if k not in batch]
        if missing:
            raise ConfigError(
                f"'method.pairing': method '{self.hp['name']}' needs {count} scenes per place, but the batch has "
                f"no {', '.join(repr(k) for k in missing)} (build the EODataModule with dates={count})"
            )
        x = torch.cat([batch[k] for k in keys])
        check_input_bands(self.encoder, x, name)
        filled = self.normalizer.fill_invalid({name: x})[name]
        self.log("train/filled_values", float(self.normalizer.filled[name]), reduce_fx="max")
        return list(filled.chunk(count))

    def augmented(self, x: torch.Tensor, local: bool = False) -> torch.Tensor:
        """One random augmentation of scenes ``x`` (global, or a multi-crop local view), normalised."""
        return self.normalizer(self.augment({self.modality_name: x}, local=local))[self.modality_name]

    def views(self, batch: dict[str, torch.Tensor], count: int = 2, local: bool = True) -> list[torch.Tensor]:
        """``count`` global views, then (if ``local``) ``augment.local_views`` small local views, all normalised.

        With ``pairing: temporal`` the second global view is of another date of the place (``s2@1``);
        the others, local views included, are of the sample's own scene.
        """
        temporal = self.hp.get("pairing") == "temporal" and count > 1
        scenes = self.scenes(batch, 2 if temporal else 1)
        sources = [scenes[0]] * count
        if temporal:
            sources[1] = scenes[1]
        local_views = self.augment.config.local_views if local else 0
        return [self.augmented(x) for x in sources] + [
            self.augmented(scenes[0], local=True) for _ in range(local_views)
        ]

    def projected_views(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``z1, z2 = g(f(x1)), g(f(x2))``: two views through encoder and ``self.projection`` as one batch."""
        x1, x2 = self.views(batch)
        z1, z2 = self.projection(self.encoder(torch.cat([x1, x2]))).chunk(2)
        return z1, z2

    # -- schedules ---------------------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        trainer = getattr(self, "_trainer", None)
        return max(1, int(trainer.estimated_stepping_batches)) if trainer is not None else 1

    def cosine(self, start: float, end: float) -> float:
        """A value following a cosine from ``start`` (step 0) to ``end`` (last step), e.g. EMA momentum."""
        return float(cosine_schedule(self.global_step, self.total_steps, start, end))

    @staticmethod
    def momentum_copy(*modules: nn.Module) -> list[nn.Module]:
        """Frozen deep copies (the momentum/teacher networks); updated only by :meth:`ema`."""
        copies = [copy.deepcopy(m) for m in modules]
        for c in copies:
            deactivate_requires_grad(c)
        return copies

    @staticmethod
    @torch.no_grad()
    def ema(pairs: list[tuple[nn.Module, nn.Module]], momentum: float) -> None:
        """teacher <- momentum * teacher + (1 - momentum) * student, for each (student, teacher)."""
        for student, teacher in pairs:
            update_momentum(student, teacher, momentum)

    def log_loss(self, loss: torch.Tensor, **extra: float | torch.Tensor) -> None:
        self.log("train/loss", loss, prog_bar=True)
        for name, value in extra.items():
            self.log(f"train/{name}", value)

    # -- optimisation ------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW / SGD / LARS; no weight decay on biases and norms; linear warmup, then cosine decay."""
        opt = self.cfg["optim"]
        trainable = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in trainable if p.ndim > 1], "weight_decay": opt["weight_decay"]},
            {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0},
        ]
        if opt["optimizer"] == "adamw":
            optimizer = torch.optim.AdamW(groups, lr=opt["lr"])
        elif opt["optimizer"] == "sgd":
            optimizer = torch.optim.SGD(groups, lr=opt["lr"], momentum=0.9)
        else:
            from lightly.utils.lars import LARS

            optimizer = LARS(groups, lr=opt["lr"], momentum=0.9)
        total = self.total_steps
        warmup = int(opt["warmup_fraction"] * total)

        def lr_factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
