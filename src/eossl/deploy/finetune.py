"""``eossl finetune``: train the one task model a user deploys, and save it as a folder.

The evaluation harness trains many heads to measure; this trains one, with the same pieces: the
encoder from an init (``checkpoint``: a pretraining checkpoint or run, or an ``eossl export`` folder;
``random``; ``external``; ``torchgeo``), a head or decoder for one declared target of the store, any
trainable mode (``frozen``, ``finetune``, ``adapter`` with its mode), the budget rule, learning-rate
choice on validation, early stopping and best-round restore of :mod:`eossl.evaluation.finetune`, on
all (``fraction: 1``) or a stratified fraction of the training labels. The validation and test
metrics go into the folder's ``config.json`` (see :mod:`eossl.deploy.task_folder`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from eossl.checkpoints import load_pretrained_encoders
from eossl.data.config import DataConfig
from eossl.deploy.folders import atomic_folder
from eossl.deploy.metadata import folder_entry, input_metadata
from eossl.deploy.task_folder import KIND, save_task_model, task_json
from eossl.errors import ConfigError
from eossl.evaluation.budget import rate_grid, rates_label, search_rates
from eossl.evaluation.config import DenseConfig, EvaluateConfig, FusionConfig, expand_init_argument
from eossl.evaluation.context import Evaluation
from eossl.evaluation.data import EvalData
from eossl.evaluation.finetune import TrainedResult, predict, train_task_model
from eossl.evaluation.inits.checkpoint import with_pair_dates
from eossl.evaluation.protocols._trained_config import TrainedProtocolConfig
from eossl.evaluation.registry import INITS
from eossl.evaluation.runner import settings
from eossl.evaluation.sink import ResultSink, Setting
from eossl.evaluation.subsets import LabelSubsets
from eossl.models.adapters import ADAPTERS, AdapterOptions
from eossl.models.config import EncoderConfig
from eossl.models.timm_export import encoder_recipe
from eossl.training import default_device, quiet_lightning

PROTOCOL_MODES = {"frozen": "frozen", "finetune": "full"}


class AdapterChoice(BaseModel):
    """``adapter:`` (with ``protocol: adapter``): the adapter mode and its settings."""

    model_config = ConfigDict(extra="forbid")
    mode: str = "spectral"
    first_layers: int = Field(1, ge=1)
    lora_rank: int = Field(8, ge=1)
    lora_alpha: float = Field(16.0, gt=0)
    spectral_hidden: int = Field(16, ge=1)
    spectral_kernel: int = Field(5, ge=1)

    def options(self) -> AdapterOptions:
        return AdapterOptions(self.first_layers, self.lora_rank, self.lora_alpha, self.spectral_hidden,
                              self.spectral_kernel)  # fmt: skip


class FinetuneBase(BaseModel):
    """``eossl finetune``'s configuration (``configs/finetune.yaml`` is the commented example).

    ``task``: a target name of the store, or a kind with exactly one target of it (unset: the store's
    only declared target). ``modalities``: the input (``s2``, or ``s2+s1`` fused with ``fusion.modes[0]``;
    unset: ``data.modality``, or the pair's two dates for a change task, fused with ``fusion.dates_modes[0]``).
    ``training``: the budget, learning-rate grid and early stopping (the trained protocols' settings).
    """

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _init_argument(cls, raw: Any) -> Any:  # init: torchgeo:RESNET18_SENTINEL2_ALL_MOCO
        if isinstance(raw, dict) and isinstance(raw.get("init"), str):
            raw = dict(raw)
            raw["init"] = expand_init_argument(raw["init"], raw)
        return raw

    out: Path = Path("runs/finetune/model")
    overwrite: bool = False
    data: DataConfig
    checkpoint: Path | None = None
    init: str = "checkpoint"
    encoder: EncoderConfig = EncoderConfig()
    task: str | None = None
    modalities: str | None = None
    fusion: FusionConfig = FusionConfig()
    protocol: Literal["frozen", "finetune", "adapter"] = "finetune"
    adapter: AdapterChoice = AdapterChoice()
    fraction: float = Field(1.0, gt=0, le=1)
    seed: int = 0
    training: TrainedProtocolConfig = TrainedProtocolConfig()
    dense: DenseConfig = DenseConfig()
    accelerator: str = "auto"


def _init_sections() -> dict[str, Any]:
    return {name.replace("-", "_"): (init.config | None, None) for name, init in INITS.items()
            if getattr(init, "config", None) is not None}  # fmt: skip


FinetuneConfig = create_model("FinetuneConfig", __base__=FinetuneBase, __module__=__name__,
                              __doc__=FinetuneBase.__doc__, **_init_sections())  # fmt: skip
"""The finetune config: :class:`FinetuneBase` plus the sections of inits that own settings (``external:``, ...)."""


def _task_name(cfg: FinetuneBase) -> str:
    if cfg.task is not None:
        return cfg.task
    from eossl.data.store import SampleStore

    store = SampleStore(cfg.data.store)
    if len(store.targets) != 1:
        raise ConfigError(f"'task' is not set and store '{cfg.data.store}' declares {len(store.targets)} targets "
                          f"({', '.join(store.targets) or 'none'}): name one with task=...")  # fmt: skip
    return next(iter(store.targets))


def evaluation_config(cfg: FinetuneBase) -> Any:
    """The one-cell evaluation the task model is trained in (one init, task, fraction and seed)."""
    if cfg.init == "checkpoint" and cfg.checkpoint is None:
        raise ConfigError("'checkpoint' is not set: pass checkpoint=RUN_OR_EXPORT, or init=random")
    if cfg.init not in INITS or cfg.init == "image-stats":
        usable = [n for n in INITS.names() if n != "image-stats"]
        raise ConfigError(f"'init': '{cfg.init}' does not give an encoder to train (use one of {', '.join(usable)})")
    if cfg.protocol == "adapter" and (cfg.adapter.mode not in ADAPTERS or not ADAPTERS[cfg.adapter.mode].protocol):
        modes = [n for n, m in ADAPTERS.items() if m.protocol]
        raise ConfigError(f"'adapter.mode': unknown adapter '{cfg.adapter.mode}' (known: {', '.join(modes)})")
    checkpoint = cfg.checkpoint
    if checkpoint is not None and checkpoint.is_dir() and not (checkpoint / "config.json").is_file():
        from eossl.deploy.export import find_checkpoint

        checkpoint = find_checkpoint(checkpoint)  # a pretraining run folder
    raw = {
        "out": str(cfg.out), "data": cfg.data.model_dump(), "encoder": cfg.encoder.model_dump(),
        "checkpoint": str(checkpoint) if checkpoint else None, "fusion": cfg.fusion.model_dump(),
        "dense": cfg.dense.model_dump(), "inits": [cfg.init], "tasks": [_task_name(cfg)],
        "fractions": [cfg.fraction], "seeds": [cfg.seed], "accelerator": cfg.accelerator, "prediction_maps": 0,
        "modalities": [cfg.modalities] if cfg.modalities else None,
    }  # fmt: skip
    for name in _init_sections():
        if getattr(cfg, name, None) is not None:
            raw[name] = getattr(cfg, name).model_dump()
    return EvaluateConfig(**raw)


@dataclass
class FinetuneSummary:
    """What was trained and how it scored (the same values as the folder's ``config.json``)."""

    out: Path
    task: str
    setting: str
    metrics: dict[str, dict[str, float]]
    seconds: float


def _setting(evaluation: Evaluation, task_name: str) -> Setting:
    task = evaluation.data.tasks[0]
    for setting in settings(evaluation.cfg, evaluation.data):
        pair = evaluation.data.pair_of(setting.combo) if setting.pair else None
        if (pair is not None) == task.kind.pairs:
            return setting
    raise ConfigError(f"no input of the config serves task '{task_name}' (modalities: {evaluation.cfg.modalities})")


def run_finetune(cfg: FinetuneBase, log: Callable[[str], None] = print) -> FinetuneSummary:
    """Train the task model ``cfg`` describes and write its folder to ``cfg.out`` (atomically)."""
    quiet_lightning()
    started = time.perf_counter()
    if cfg.out.exists() and not cfg.overwrite:  # refused before any training, not after it
        raise ConfigError(f"'{cfg.out}' already exists: choose another 'out' or set overwrite=true")
    ecfg = evaluation_config(cfg)
    INITS[cfg.init](ecfg, {}).check()
    data = EvalData(ecfg)
    task = data.tasks[0]
    subsets = LabelSubsets(data.store, data.splits["train"], data.tasks, ecfg.fractions, ecfg.seeds)
    pretrained = {}
    if cfg.init == "checkpoint":
        pretrained = with_pair_dates(load_pretrained_encoders(ecfg.checkpoint), data.pairs.values(),
                                     "early" in ecfg.fusion.dates_modes)  # fmt: skip
    init = INITS[cfg.init](ecfg, pretrained)
    device = default_device() if cfg.accelerator == "auto" else torch.device(cfg.accelerator)
    evaluation = Evaluation(ecfg, data, subsets, ResultSink(cfg.out, 0, cfg.seed), device, log)
    setting = _setting(evaluation, task.name)
    reason = init.unavailable(setting)
    if reason:
        raise ConfigError(f"init '{cfg.init}' cannot give an encoder for {setting.label}: {reason}")
    run = init.start(setting, evaluation)
    mode = cfg.adapter.mode if cfg.protocol == "adapter" else PROTOCOL_MODES[cfg.protocol]
    options = cfg.adapter.options()
    subset = subsets(task, cfg.fraction, cfg.seed)
    target = [task.target.name]
    train, val = data.dataset("train", setting.combo, target, subset), data.dataset("val", setting.combo, target)
    log(f"finetune {task.name} ({task.kind.name}) on {setting.label}: {run.init} encoder, {cfg.protocol}"
        f"{f' ({mode})' if cfg.protocol == 'adapter' else ''}, {len(subset)} labelled samples")  # fmt: skip

    def fit(rates) -> TrainedResult:
        return train_task_model(run.encoder, run.normalizer, run.modality, task, train, val, cfg.training, mode,
                                cfg.accelerator, cfg.seed, options, rates)  # fmt: skip

    result = search_rates(fit, rate_grid(cfg.training, encoder_trains=mode != "frozen"))
    log(f"  {rates_label(result.run.rates)}: {result.run.steps} steps (best round at step {result.run.best_step})")
    metrics = {split: task.metrics(predict(result.model, data.inputs(split, setting.combo, 256), device),
                                   evaluation.target(split, task)) for split in ("val", "test")}  # fmt: skip
    bands = [data.modalities[m] for m in setting.combo]
    parts = [init.stats(m, evaluation) for m in setting.combo]  # the normaliser's, with p2/p98 where known
    keys = [k for k in ("mean", "std", "p2", "p98") if all(k in p for p in parts)]
    stats = {k: [v for part in parts for v in part[k]] for k in keys}
    channels = data.channels(setting.combo)
    wavelengths = {m: data.modalities[m].wavelengths_nm for m in setting.combo}
    recipe = encoder_recipe(init.encoder_config(evaluation), channels, data.image_size, wavelengths, setting.fusion)
    pair = data.pair_of(setting.combo) if setting.pair else None
    entry = folder_entry(
        KIND, input_metadata(bands, stats, data.image_size), recipe=recipe,
        adapter={"mode": mode, "options": dataclasses.asdict(options)}, tasks=[task_json(task)],
        dense=dataclasses.asdict(cfg.dense.options()), dates=[pair.before, pair.after] if pair else [],
        class_names=list(task.target.class_names or data.store.class_names or []), metrics=metrics,
        training={"init": run.init, "checkpoint": str(ecfg.checkpoint) if ecfg.checkpoint else None,
                  "protocol": cfg.protocol, "mode": mode, "fraction": cfg.fraction, "seed": cfg.seed,
                  "num_labels": len(subset), "store": str(cfg.data.store), **result.run.columns()},
    )  # fmt: skip
    with atomic_folder(cfg.out, cfg.overwrite) as folder:
        save_task_model(folder, result.model, entry)
        (folder / "README.md").write_text(_card(entry, cfg.out.name), encoding="utf-8")
    for split, values in metrics.items():
        log(f"  {split}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
    return FinetuneSummary(cfg.out, task.name, setting.label, metrics, time.perf_counter() - started)


def _card(entry: dict[str, Any], name: str) -> str:
    task, training = entry["tasks"][0], entry["training"]
    lines = [f"# {name}: {task['kind']} model for `{task['name']}`", "",
             f"Trained by `eossl finetune` ({training['protocol']}, {training['init']} encoder, "
             f"{training['num_labels']} labelled samples, fraction {training['fraction']:g}) on {entry['modality']} "
             f"({len(entry['bands'])} bands: {', '.join(b['name'] for b in entry['bands'])}).", "",
             "Apply it to a scene: `eossl predict " + name + " SCENE.tif OUT.tif`.", "", "| split | metric | value |",
             "|---|---|---:|"]  # fmt: skip
    for split, values in entry["metrics"].items():
        lines += [f"| {split} | {metric} | {value:.4f} |" for metric, value in values.items()]
    return "\n".join(lines) + "\n"
