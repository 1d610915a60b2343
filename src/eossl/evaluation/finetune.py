"""Trained protocols: an encoder plus a task head (or decoder) trained on the labelled subset.

One loop serves three protocols, which differ only in what the optimiser may change:
``frozen`` (the head or decoder only; encoder weights and BatchNorm statistics fixed), ``finetune``
(everything; the encoder at ``encoder_lr_factor`` times the head's learning rate) and ``adapter``
(a spectral adapter, the first N layers or LoRA on attention, see :mod:`eossl.models.adapters`).
The schedule is linear warmup then cosine; the run is ``epochs`` passes over the subset clipped to
``[min_steps, max_steps]`` so small fractions are not under-trained. The primary metric is measured
on the validation split ``validations`` times per run: that is the learning curve, the early-stopping
signal (``patience`` rounds without improvement) and the model selection (the best round's weights
are restored before testing). Augmentation is spatial only (flips, 90-degree rotations), applied to
masks with the same parameters.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from eossl.config import TrainedProtocolConfig
from eossl.data.augment import AugmentConfig, MultiModalAugment
from eossl.data.modality import Modality
from eossl.data.normalize import BandNormalizer, normalize_input
from eossl.evaluation.tasks import Task
from eossl.models.adapters import configure_trainable, count_parameters
from eossl.models.decoders import PyramidDecoder, feature_pyramid, pyramid_channels
from eossl.training import bf16_autocast, resolve_precision

SPATIAL_ONLY = AugmentConfig(crop_scale=(1.0, 1.0), brightness=0, band_gain=0, contrast=0, haze=0, noise_std=0)
MASK = Modality(name="target_mask", kind="categorical", bands=("class",), dtype="uint8", gsd_m=(10.0,))


class TaskModel(L.LightningModule):
    """Normaliser + encoder + head (pooled features) or pyramid decoder (dense tasks)."""

    def __init__(
        self,
        encoder: nn.Module,
        normalizer: BandNormalizer,
        modality: Modality,
        task: Task,
        num_classes: int,
        cfg: TrainedProtocolConfig,
        total_steps: int,
        image_size: int,
        train_norm_statistics: bool,
        steps_per_epoch: float = 1.0,
    ) -> None:
        super().__init__()
        self.encoder, self.normalizer, self.modality, self.task = encoder, normalizer, modality.name, task
        outputs = task.num_outputs(num_classes)
        if task.dense:
            self.head = PyramidDecoder(pyramid_channels(encoder, modality.num_bands, image_size), outputs)
        else:
            self.head = nn.Linear(int(encoder.num_features), outputs)
        self.augment = MultiModalAugment({modality.name: modality, MASK.name: MASK}, SPATIAL_ONLY)
        self.loss_fn, self.num_classes = task.loss(), num_classes
        self.cfg, self.total_steps, self.train_norm_statistics = cfg, total_steps, train_norm_statistics
        self.steps_per_epoch = steps_per_epoch  # for the learning curve's epoch axis
        self.encoder_trains = any(p.requires_grad for p in encoder.parameters())
        self.history: list[dict] = []
        self.best_value, self.best_state, self.best_step = -math.inf, None, 0
        self._val_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def train(self, mode: bool = True) -> TaskModel:
        super().train(mode)
        if not self.train_norm_statistics:
            self.encoder.eval()  # frozen / adapter protocols keep the encoder's BatchNorm statistics
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = normalize_input(self.normalizer, self.modality, x, self.encoder)
        with torch.set_grad_enabled(self.encoder_trains and torch.is_grad_enabled()):
            features = feature_pyramid(self.encoder, x) if self.task.dense else self.encoder(x)
        if self.task.dense:
            return self.head(features, x.shape[-2:])
        return self.task.prepare_output(self.head(features))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        if self.task.dense:
            out = self.augment({self.modality: x, MASK.name: y[:, None].float()})
            x, y = out[self.modality], out[MASK.name][:, 0].round().long()
        else:
            x = self.augment({self.modality: x})[self.modality]
        loss = self.loss_fn(self(x).float(), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self._val_outputs.append((self(x).float().cpu(), y.cpu()))

    def on_validation_epoch_end(self) -> None:
        outputs, targets = (torch.cat(t) for t in zip(*self._val_outputs, strict=True))
        self._val_outputs.clear()
        value = self.task.metrics(outputs, targets, self.num_classes)[self.task.primary]
        self.log("val_primary", value)
        step = int(self.global_step)
        self.history.append({"step": step, "epoch": step / self.steps_per_epoch, "value": value})
        score = value if self.task.higher_is_better else -value
        if score > self.best_value:
            self.best_value, self.best_step = score, step
            self.best_state = {k: v.detach().clone() for k, v in self.state_dict().items()}

    def configure_optimizers(self) -> dict:
        encoder_params = [p for p in self.encoder.parameters() if p.requires_grad]
        groups = [{"params": self.head.parameters(), "lr": self.cfg.lr}]
        if encoder_params:
            groups.append({"params": encoder_params, "lr": self.cfg.lr * self.cfg.encoder_lr_factor})
        optimizer = torch.optim.AdamW(groups, weight_decay=self.cfg.weight_decay)
        warmup = max(1, round(self.total_steps * self.cfg.warmup_fraction))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, self.total_steps - warmup))))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


@dataclass
class TrainedResult:
    """A trained model (eval mode, CPU, best validation round restored) and how it got there."""

    model: TaskModel
    history: list[dict] = field(default_factory=list)
    steps: int = 0
    best_step: int = 0
    trainable_encoder_params: int = 0
    head_params: int = 0


def train_steps(num_labelled: int, cfg: TrainedProtocolConfig) -> int:
    per_epoch = math.ceil(num_labelled / cfg.batch_size)
    return int(min(max(cfg.epochs * per_epoch, cfg.min_steps), cfg.max_steps))


def train_task_model(
    encoder: nn.Module,
    normalizer: BandNormalizer,
    modality: Modality,
    task: Task,
    num_classes: int,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    cfg: TrainedProtocolConfig,
    mode: str,
    accelerator: str = "auto",
    seed: int = 0,
    adapter_options: dict | None = None,
) -> TrainedResult:
    """Train a copy of ``encoder`` with a new head on ``train``; ``mode`` and ``adapter_options`` go to
    :func:`eossl.models.adapters.configure_trainable` (``frozen``, ``full``, ``spectral``, ...)."""
    L.seed_everything(seed, verbose=False)
    images, targets = train
    steps = train_steps(len(images), cfg)
    trainable = configure_trainable(copy.deepcopy(encoder), mode, **(adapter_options or {}))
    batch_size = min(cfg.batch_size, len(images))
    model = TaskModel(
        trainable, copy.deepcopy(normalizer), modality, task, num_classes, cfg, steps, images.shape[-1],
        train_norm_statistics=mode == "full", steps_per_epoch=len(images) / batch_size,
    )  # fmt: skip
    loader = DataLoader(
        TensorDataset(images, task.prepare_target(targets)),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        drop_last=len(images) > cfg.batch_size,
    )
    val_loader = DataLoader(TensorDataset(val[0], task.prepare_target(val[1])), batch_size=256)
    callbacks = [EarlyStopping("val_primary", patience=cfg.patience, mode="max" if task.higher_is_better else "min")]
    trainer = L.Trainer(
        max_steps=steps,
        max_epochs=-1,
        val_check_interval=max(1, steps // cfg.validations),
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        callbacks=callbacks if cfg.patience > 0 else [],
        accelerator=accelerator,
        precision=resolve_precision("auto", accelerator),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model.train()
    trainer.fit(model, loader, val_loader)
    if model.best_state is not None:
        model.load_state_dict(model.best_state)
        model.best_state = None
    return TrainedResult(
        model=model.cpu().eval(),
        history=model.history,
        steps=int(trainer.global_step),
        best_step=model.best_step,
        trainable_encoder_params=count_parameters(model.encoder),
        head_params=count_parameters(model.head),
    )


@torch.no_grad()
def predict(model: TaskModel, images: torch.Tensor, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """Outputs of ``model`` on ``images`` (physical units), computed in batches on ``device``."""
    model = model.to(device).eval()
    with bf16_autocast(device):
        out = [model(images[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)]
    model.cpu()
    return torch.cat(out)
