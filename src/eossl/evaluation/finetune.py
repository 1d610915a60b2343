"""Trained protocols: an encoder plus one task head (or decoder) per task, trained on the labelled subset.

One loop serves every trained protocol, which differ only in what the optimiser may change:
``frozen`` (the heads or decoders only; encoder weights and BatchNorm statistics fixed), ``finetune``
(everything; the encoder at ``encoder_lr_factor`` times the heads' learning rate) and ``adapter``
(a spectral adapter, the first N layers or LoRA on attention, see :mod:`eossl.models.adapters`).
The schedule is linear warmup then cosine; the run's length, learning rates and early stopping follow
the budget rule of :mod:`eossl.evaluation.budget`, the same for every init. The primary metric is
measured on the validation split ``validations`` times per run: that is the learning curve, the
early-stopping signal (``patience`` rounds without improvement, not before ``stop_after`` of the
budget) and the model selection (the best round's weights are restored before testing); each result
says how the run ended and whether it had converged. Augmentation is spatial only (flips, 90-degree
rotations), applied to masks with the same parameters.

Multi-task learning is the same loop with several tasks (:func:`train_multitask_model`): one encoder
pass per batch feeds every head (a linear head on the pooled features for pooled tasks, a
decoder of :data:`~eossl.models.decoders.DECODERS` for dense ones, ``dense.decoder``), the loss is a weighted sum of the
tasks' losses (:mod:`eossl.evaluation.multitask`: fixed or learned uncertainty weights), and the
model-selection / early-stopping score is the mean over tasks of their primary validation metrics
(sign-flipped where lower is better). A single task (:func:`train_task_model`) is the special case
of one task with weight 1.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import lightning as L
import torch
from torch import nn
from torch.utils.data import Dataset

from eossl.data.augment import AugmentConfig, MultiModalAugment
from eossl.data.modality import Modality
from eossl.data.normalize import BandNormalizer, normalize_input
from eossl.evaluation.batches import INPUT, TensorBatches, batch_loader, in_batches
from eossl.evaluation.budget import BudgetStopping, Rates, RunRecord, budget_steps, convergence, stop_floor
from eossl.evaluation.multitask import FixedWeighting, LossWeighting, loss_weighting
from eossl.evaluation.protocols._trained_config import TrainedProtocolConfig
from eossl.evaluation.tasks._base import Task
from eossl.models.adapters import AdapterOptions, configure_trainable, count_parameters
from eossl.models.decoders import build_decoder
from eossl.models.interface import Encoder
from eossl.training import bf16_autocast, resolve_precision

SPATIAL_ONLY = AugmentConfig(crop_scale=(1.0, 1.0), brightness=0, band_gain=0, contrast=0, haze=0, noise_std=0)
MASK = Modality(name="target_mask", kind="categorical", bands=("class",), dtype="uint8", gsd_m=(10.0,))


def _continuous_mask(task: Task) -> Modality:
    """How a per-pixel value target (pixel regression) moves with the image: bilinear, never altered."""
    return Modality(name=f"target_{task.name}", kind="elevation", bands=("value",), dtype="float32", gsd_m=(10.0,))


class TaskModel(L.LightningModule):
    """Normaliser + encoder + one head per task, in ``heads`` keyed by task name: a linear head on the
    pooled features (pooled tasks) or a decoder on the feature pyramid (dense tasks; the task options'
    ``decoder``).

    ``forward`` runs the encoder once and returns every task's outputs by name. ``weighting`` combines
    the tasks' losses (default: fixed weights of 1). Batches are dicts with ``"input"`` and each task's
    target under its target name; spatial augmentation is drawn once per sample and applied to the
    images and every dense task's target alike (nearest neighbour for classes).
    """

    def __init__(
        self,
        encoder: Encoder,
        normalizer: BandNormalizer,
        modality: Modality,
        tasks: Task | Sequence[Task],
        cfg: TrainedProtocolConfig,
        total_steps: int,
        image_size: int,
        train_norm_statistics: bool,
        steps_per_epoch: float = 1.0,
        weighting: LossWeighting | None = None,
        rates: Rates | None = None,
    ) -> None:
        super().__init__()
        tasks = [tasks] if isinstance(tasks, Task) else list(tasks)
        names = [t.name for t in tasks]
        if not tasks or len(set(names)) != len(names):
            raise ValueError(f"TaskModel needs one or more distinct tasks, got {names}")
        self.encoder, self.normalizer, self.modality = encoder, normalizer, modality.name
        self.tasks: dict[str, Task] = {t.name: t for t in tasks}
        dense = [t for t in tasks if t.dense]
        self.heads = nn.ModuleDict(
            {
                t.name: build_decoder(t.kind.options.decoder, encoder, image_size, t.num_outputs()) if t.dense
                else nn.Linear(int(encoder.num_features), t.num_outputs())
                for t in tasks
            }
        )  # fmt: skip
        self.weighting = weighting if weighting is not None else FixedWeighting(names)
        if self.weighting.tasks != names:
            raise ValueError(f"the loss weighting is for tasks {self.weighting.tasks}, the model's are {names}")
        self.needs_pyramid, self.needs_pooled = bool(dense), len(dense) < len(tasks)
        self.mask_keys = {t.name: f"{MASK.name}:{t.name}" for t in dense}  # augmentation keys of the masks
        masks = {self.mask_keys[t.name]: MASK if t.kind.classes else _continuous_mask(t) for t in dense}
        self.augment = MultiModalAugment({modality.name: modality, **masks}, SPATIAL_ONLY)
        self.loss_fns = nn.ModuleDict({t.name: t.loss() for t in tasks})
        self.cfg, self.total_steps, self.train_norm_statistics = cfg, total_steps, train_norm_statistics
        self.rates = rates or Rates(cfg.lr[0], cfg.encoder_lr_factor[0])
        self.stopped_early = False  # set by BudgetStopping
        self.steps_per_epoch = steps_per_epoch  # for the learning curve's epoch axis
        self.encoder_trains = any(p.requires_grad for p in encoder.parameters())
        # one entry per validation round: step, epoch, score, values (task -> primary metric), weights
        self.history: list[dict] = []
        self.best_value, self.best_state, self.best_step = -math.inf, None, 0
        self._val_outputs: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []

    def train(self, mode: bool = True) -> TaskModel:
        super().train(mode)
        if not self.train_norm_statistics:
            self.encoder.eval()  # frozen / adapter protocols keep the encoder's BatchNorm statistics
        return self

    def _features(self, x: torch.Tensor) -> tuple[list[torch.Tensor] | None, torch.Tensor | None]:
        """Pyramid and pooled features, each only when some head needs it, from one encoder pass."""
        if self.needs_pyramid and self.needs_pooled:
            return self.encoder.forward_pyramid_and_pooled(x)
        if self.needs_pyramid:
            return self.encoder.forward_pyramid(x), None
        return None, self.encoder(x)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every task's outputs (logits, or ``[N]`` predictions for regression) on ``x`` in physical units."""
        x = normalize_input(self.normalizer, self.modality, x, fill_missing=not self.encoder.handles_missing)
        with torch.set_grad_enabled(self.encoder_trains and torch.is_grad_enabled()):
            pyramid, pooled = self._features(x)
        outputs = {
            name: self.heads[name](pyramid, x.shape[-2:]) if task.dense else self.heads[name](pooled)
            for name, task in self.tasks.items()
        }
        return {name: self.tasks[name].prepare_output(out) for name, out in outputs.items()}

    def targets(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each task's target of ``batch`` (by task name), as its loss expects it."""
        return {name: task.prepare_target(batch[task.target.name]) for name, task in self.tasks.items()}

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        target = self.targets(batch)
        masks = {key: target[name][:, None].float() for name, key in self.mask_keys.items()}
        out = self.augment({self.modality: batch[INPUT], **masks})
        x = out[self.modality]
        for name, key in self.mask_keys.items():
            moved = out[key][:, 0]
            target[name] = moved.round().long() if self.tasks[name].kind.classes else moved
        outputs = self(x)
        losses = {name: self.loss_fns[name](outputs[name].float(), target[name]) for name in self.tasks}
        loss = self.weighting(losses)
        self.log("train_loss", loss)
        if len(self.tasks) > 1:
            for name, value in losses.items():
                self.log(f"train_loss/{name}", value)
            for name, weight in self.weighting.weights().items():
                self.log(f"loss_weight/{name}", weight)
        return loss

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        outputs = {name: out.float().cpu() for name, out in self(batch[INPUT]).items()}
        self._val_outputs.append((outputs, {k: v.cpu() for k, v in self.targets(batch).items()}))

    def on_validation_epoch_end(self) -> None:
        values = {}
        for name, task in self.tasks.items():
            outputs = torch.cat([out[name] for out, _ in self._val_outputs])
            targets = torch.cat([target[name] for _, target in self._val_outputs])
            values[name] = task.metrics(outputs, targets)[task.primary]
        self._val_outputs.clear()
        score = sum(v if self.tasks[n].higher_is_better else -v for n, v in values.items()) / len(values)
        self.log("val_score", score)
        for name, value in values.items():
            self.log(f"val/{name}", value)
        step = int(self.global_step)
        self.history.append(
            {"step": step, "epoch": step / self.steps_per_epoch, "score": score, "values": values,
             "weights": self.weighting.weights()}
        )  # fmt: skip
        if score > self.best_value:
            self.best_value, self.best_step = score, step
            self.best_state = {k: v.detach().clone() for k, v in self.state_dict().items()}

    def curve(self, task: str) -> list[dict]:
        """The learning curve of ``task``: ``step``, ``epoch`` and ``value`` (validation primary metric) per round."""
        return [{"step": h["step"], "epoch": h["epoch"], "value": h["values"][task]} for h in self.history]

    def configure_optimizers(self) -> dict:
        encoder_params = [p for p in self.encoder.parameters() if p.requires_grad]
        lr = self.rates.lr
        groups = [{"params": self.heads.parameters(), "lr": lr}]
        if encoder_params:
            groups.append({"params": encoder_params, "lr": lr * self.rates.encoder_lr_factor})
        weighting_params = list(self.weighting.parameters())
        if weighting_params:  # learned loss weights: the heads' rate, no decay (it would pull them to equal)
            groups.append({"params": weighting_params, "lr": lr, "weight_decay": 0.0})
        optimizer = torch.optim.AdamW(groups, weight_decay=self.cfg.weight_decay)
        warmup = max(1, round(self.total_steps * self.cfg.warmup_fraction))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, self.total_steps - warmup))))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class _RunSteps:
    """``steps`` and ``best_step`` of a result, read from its :class:`RunRecord`."""

    run: RunRecord

    @property
    def steps(self) -> int:
        return self.run.steps

    @property
    def best_step(self) -> int:
        return self.run.best_step


@dataclass
class TrainedResult(_RunSteps):
    """A trained single-task model (eval mode, CPU, best validation round restored) and how it got there."""

    model: TaskModel
    run: RunRecord
    history: list[dict] = field(default_factory=list)  # step, epoch, value (validation primary metric)
    trainable_encoder_params: int = 0
    head_params: int = 0


@dataclass
class MultitaskResult(_RunSteps):
    """A trained multi-task model (eval mode, CPU, best validation round restored) and how it got there.

    ``curves``: per task, its learning curve (``step``, ``epoch``, ``value``); ``history``: per
    validation round, ``step``, ``epoch``, the selection ``score``, every task's primary metric
    (``values``) and the effective loss ``weights``; ``loss_weights``: the effective weights of the
    restored round.
    """

    model: TaskModel
    run: RunRecord
    curves: dict[str, list[dict]] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    trainable_encoder_params: int = 0
    head_params: dict[str, int] = field(default_factory=dict)
    loss_weights: dict[str, float] = field(default_factory=dict)


def _image_size(data: Dataset) -> int:
    return int(data.__getitems__([0])[INPUT].shape[-1])


def train_multitask_model(
    encoder: Encoder,
    normalizer: BandNormalizer,
    modality: Modality,
    tasks: Sequence[Task],
    train: Dataset,
    val: Dataset,
    cfg: TrainedProtocolConfig,
    mode: str,
    accelerator: str = "auto",
    seed: int = 0,
    adapter_options: AdapterOptions | None = None,
    weighting: str | LossWeighting = "fixed",
    weights: Mapping[str, float] | None = None,
    rates: Rates | None = None,
) -> MultitaskResult:
    """Train a copy of ``encoder`` with one new head per task on the labelled ``train`` data.

    ``train`` and ``val`` give dict batches (``"input"`` plus each task's target under its target name:
    a :class:`TensorBatches` or the evaluation's streaming datasets). ``mode`` and ``adapter_options``
    select what trains (:data:`eossl.models.adapters.ADAPTERS`: ``frozen``, ``full``, ``spectral``, ...);
    ``weighting`` (``fixed`` with ``weights``, default 1 each, or ``uncertainty``; or a
    :class:`~eossl.evaluation.multitask.LossWeighting`) combines the tasks' losses. Model selection and
    early stopping use the mean over tasks of their primary validation metrics, sign-flipped where lower
    is better. ``rates``: one point of the config's learning-rate grid (default: its first). Non-finite
    input values the model fills (training, validation, later predictions) are counted in
    ``normalizer.filled``.
    """
    L.seed_everything(seed, verbose=False)
    tasks = list(tasks)
    steps = budget_steps(len(train), cfg)
    options = adapter_options or AdapterOptions()
    trainable = configure_trainable(copy.deepcopy(encoder), mode, **vars(options))
    batch_size = min(cfg.batch_size, len(train))
    if not isinstance(weighting, LossWeighting):
        weighting = loss_weighting(weighting, [t.name for t in tasks], weights)
    model_normalizer = copy.deepcopy(normalizer)
    model_normalizer.filled = normalizer.filled  # values filled while training and predicting count on the caller's
    model = TaskModel(
        trainable, model_normalizer, modality, tasks, cfg, steps, _image_size(train),
        train_norm_statistics=mode == "full", steps_per_epoch=len(train) / batch_size, weighting=weighting,
        rates=rates,
    )  # fmt: skip
    loader = batch_loader(train, batch_size, shuffle=True, seed=seed, drop_last=len(train) > cfg.batch_size)
    trainer = L.Trainer(
        max_steps=steps,
        max_epochs=-1,
        val_check_interval=max(1, steps // cfg.validations),
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        callbacks=[BudgetStopping(cfg.patience, stop_floor(steps, cfg))],
        accelerator=accelerator,
        precision=resolve_precision("auto", accelerator),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model.train()
    trainer.fit(model, loader, batch_loader(val, 256))
    if model.best_state is not None:
        model.load_state_dict(model.best_state)
        model.best_state = None
    scores = [h["score"] for h in model.history]
    record = RunRecord(model.rates, int(trainer.global_step), steps, model.best_step, model.best_value,
                       convergence(scores, model.stopped_early, cfg.converged_tolerance))  # fmt: skip
    return MultitaskResult(
        model=model.cpu().eval(),
        run=record,
        curves={t.name: model.curve(t.name) for t in tasks},
        history=model.history,
        trainable_encoder_params=count_parameters(model.encoder),
        head_params={name: count_parameters(head) for name, head in model.heads.items()},
        loss_weights=model.weighting.weights(),
    )


def train_task_model(
    encoder: Encoder,
    normalizer: BandNormalizer,
    modality: Modality,
    task: Task,
    train: Dataset,
    val: Dataset,
    cfg: TrainedProtocolConfig,
    mode: str,
    accelerator: str = "auto",
    seed: int = 0,
    adapter_options: AdapterOptions | None = None,
    rates: Rates | None = None,
) -> TrainedResult:
    """Train a copy of ``encoder`` with a new head for ``task``: :func:`train_multitask_model` with this
    one task at weight 1."""
    result = train_multitask_model(
        encoder, normalizer, modality, [task], train, val, cfg, mode, accelerator=accelerator, seed=seed,
        adapter_options=adapter_options, rates=rates,
    )  # fmt: skip
    return TrainedResult(
        model=result.model,
        run=result.run,
        history=result.curves[task.name],
        trainable_encoder_params=result.trainable_encoder_params,
        head_params=result.head_params[task.name],
    )


@torch.no_grad()
def predict_tasks(model: TaskModel, batches: Iterable[torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Every task's outputs of ``model`` on image batches (physical units), computed on ``device``."""
    model = model.to(device).eval()
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in model.tasks}
    with bf16_autocast(device):
        for images in batches:
            for name, out in model(images.to(device)).items():
                outputs[name].append(out.float().cpu())
    model.cpu()
    return {name: torch.cat(parts) for name, parts in outputs.items()}


def predict(model: TaskModel, batches: Iterable[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Outputs of a single-task ``model`` on image batches (physical units), computed on ``device``."""
    if len(model.tasks) != 1:
        raise ValueError(f"predict takes a single-task model, this one has {list(model.tasks)}: use predict_tasks")
    (name,) = model.tasks
    return predict_tasks(model, batches, device)[name]


__all__ = [
    "INPUT",
    "MultitaskResult",
    "Rates",
    "RunRecord",
    "TaskModel",
    "TensorBatches",
    "TrainedResult",
    "budget_steps",
    "in_batches",
    "predict",
    "predict_tasks",
    "train_multitask_model",
    "train_task_model",
]
