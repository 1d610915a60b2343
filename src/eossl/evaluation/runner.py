"""``eossl evaluate``: every init x protocol x task x label fraction x seed on the same splits.

Inits: ``checkpoint`` (the pretrained encoder, reported under its method's name, e.g. ``simclr``),
``random`` (same architecture, random weights), ``external`` (same architecture with a local timm
weights file, e.g. ImageNet; reported under ``external.label``) and ``image-stats`` (per-band
mean/std/percentiles; feature protocols only). Random and external encoders get their BatchNorm
statistics re-estimated on the unlabelled training images, so the baselines are not handicapped by
un-calibrated normalisation.

Protocols: ``linear`` (logistic/ridge regression on cached frozen features, weight decay chosen on
the validation split), ``knn`` (weighted cosine kNN on the same cached features, k chosen on the
validation split), and the trained protocols of :mod:`eossl.evaluation.finetune`: ``frozen``,
``finetune`` and ``adapter-*``. Every protocol sees the same label subsets: for each fraction and
seed one nested, stratified subset per stratification (class or class presence), saved to
``label_subsets.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from eossl.config import ConfigError, EvaluateConfig, TrainedProtocolConfig, dump_config
from eossl.data.datamodule import EODataModule
from eossl.data.metadata import (
    METADATA_MODALITY,
    MetadataError,
    constant_planes,
    metadata_encoding,
    metadata_modality,
    stacked_modality,
)  # fmt: skip
from eossl.data.normalize import BandNormalizer
from eossl.data.splits import label_fraction, multilabel_fraction
from eossl.evaluation.features import cache_key, cached, encode, image_statistics, recalibrate_batchnorm, save_atomic
from eossl.evaluation.finetune import predict, predict_tasks, train_multitask_model, train_task_model
from eossl.evaluation.knn import knn_scores
from eossl.evaluation.linear_probe import fit_linear
from eossl.evaluation.report import write_report
from eossl.evaluation.results import CURVE_COLUMNS, RESULT_COLUMNS, SCHEMA_VERSION, write_csv_atomic
from eossl.evaluation.tasks import TASKS, Task
from eossl.io import write_text_atomic
from eossl.methods.pretrain import PretrainedEncoder, load_pretrained_encoders
from eossl.models.encoders import encoder_from_config, is_vision_transformer
from eossl.models.fusion import EarlyFusionEncoder, LateFusionEncoder, set_sensor_dropout, with_modality_stems
from eossl.training import default_device, quiet_lightning

FEATURE_PROTOCOLS = {"linear": ("classification", "multilabel", "regression"), "knn": ("classification", "multilabel")}
KNOWN_INITS = ("checkpoint", "random", "external", "image-stats")


class _Encoders:
    """The encoder inits for one modality combination and fusion mode; baselines copy the checkpoint's
    architecture when one is given.

    ``none`` (one modality): the modality's encoder. ``early``: one encoder on the stacked channels.
    ``stems``: early fusion with one input convolution per modality. ``late-*``: one encoder per
    modality, features fused. A checkpoint provides the encoders of the modalities it was pretrained
    on (and, for shared-encoder cross-modal pretraining, the stem-fused encoder of its combination);
    a combination it cannot provide is skipped for the checkpoint init, with the reason logged.
    """

    def __init__(
        self, cfg: EvaluateConfig, grid: _Grid, combo: tuple[str, ...], fusion: str,
        pretrained: dict[str, PretrainedEncoder],
    ) -> None:  # fmt: skip
        self.cfg, self.grid, self.combo, self.fusion, self.pretrained = cfg, grid, combo, fusion, pretrained
        self.name = "+".join(combo)
        self.train_images = grid.data["train"][self.name]
        self.channels = {m: grid.modalities[m].num_bands for m in combo}
        self.encoder_config = cfg.encoder.with_img_size(self.train_images.shape[-1]).model_dump()
        if pretrained:
            self.encoder_config = next(iter(pretrained.values())).encoder_config
            self.method = next(iter(pretrained.values())).method
        if "external" in cfg.inits and cfg.external is None:
            raise ConfigError("'inits' contains 'external' but 'external.weights_file' is not set")

    @property
    def encoder_name(self) -> str:
        return self.encoder_config["name"]

    def label(self, init: str) -> str:
        """The name an init is reported under."""
        if init == "checkpoint":
            return self.method
        return self.cfg.external.label if init == "external" else init

    def unavailable(self, init: str) -> str | None:
        """Why ``init`` cannot be built for this combination, or None."""
        if init == "checkpoint":
            needed = [self.name] if self.fusion in ("early", "stems") else list(self.combo)
            missing = [m for m in needed if m not in self.pretrained]
            if missing:
                return f"the checkpoint has no encoder for {', '.join(missing)} (it has {', '.join(self.pretrained)})"
            if self.fusion == "early" and hasattr(self.pretrained[self.name].encoder, "eossl_stems"):
                return "the checkpoint's fused encoder has modality stems: evaluate it with fusion mode 'stems'"
            if self.fusion == "stems" and not hasattr(self.pretrained[self.name].encoder, "eossl_stems"):
                return "the checkpoint's fused encoder has no modality stems"
        if init == "image-stats" and self.fusion not in ("none", self.cfg.fusion.modes[0]):
            return f"image statistics do not depend on the fusion mode (evaluated under {self.cfg.fusion.modes[0]})"
        if init == "external" and self.fusion == "stems":
            return "external weights have a single input convolution, not one per modality"
        return None

    def _stats(self, modality: str, init: str) -> dict[str, list[float]]:
        if init == "checkpoint" and modality in self.pretrained:
            normalizer = self.pretrained[modality].normalizer
            mean, std = (getattr(normalizer, f"{modality}_{k}").flatten().tolist() for k in ("mean", "std"))
            return {"mean": mean, "std": std}
        return self.grid.stats[modality]

    def _normalizer(self, init: str) -> BandNormalizer:
        parts = [self._stats(m, init) for m in self.combo]
        stats = {k: [v for part in parts for v in part[k]] for k in ("mean", "std")}
        return BandNormalizer({self.name: stats}, [self.name])

    def _plain(self, init: str, bands: int) -> torch.nn.Module:
        config = dict(self.encoder_config)
        if init == "external":
            config["weights_file"] = str(self.cfg.external.weights_file)
        return encoder_from_config(config, bands)

    def build(self, init: str) -> tuple[torch.nn.Module, BandNormalizer]:
        """The encoder (taking the stacked combination) and its normaliser; baselines get their
        BatchNorm statistics re-estimated on the unlabelled training images."""
        normalizer = self._normalizer(init)
        torch.manual_seed(0)
        if self.fusion == "none":
            if init == "checkpoint":
                return self.pretrained[self.name].encoder, normalizer
            encoder = self._plain(init, self.channels[self.name])
        elif self.fusion in ("early", "stems"):
            if init == "checkpoint":
                return self.pretrained[self.name].encoder, normalizer
            if self.fusion == "stems":
                template = self._plain(init, self.channels[self.combo[0]])
                encoder = with_modality_stems(template, self.channels)
            else:
                encoder = EarlyFusionEncoder(self._plain(init, sum(self.channels.values())), self.channels)
        else:
            encoders = {
                m: self.pretrained[m].encoder if init == "checkpoint" else self._plain(init, bands)
                for m, bands in self.channels.items()
            }
            encoder = LateFusionEncoder(encoders, self.channels, self.fusion.removeprefix("late-"), self.image_size)
        if init != "checkpoint":
            recalibrate_batchnorm(encoder, normalizer, self.name, self.train_images, self.grid.device)
        return encoder, normalizer

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[-1])


def _trained_protocols(cfg: EvaluateConfig) -> list[tuple[str, str, TrainedProtocolConfig, dict]]:
    """(protocol name, trainable mode, config, adapter options) of every enabled trained protocol."""
    protocols = []
    if cfg.frozen.enabled:
        protocols.append(("frozen", "frozen", cfg.frozen, {}))
    if cfg.finetune.enabled:
        protocols.append(("finetune", "full", cfg.finetune, {}))
    if cfg.adapter.enabled:
        for mode in cfg.adapter.modes:
            protocols.append((cfg.adapter.protocol_name(mode), mode, cfg.adapter, cfg.adapter.options(mode)))
    return protocols


def _check_plan(cfg: EvaluateConfig, encoder_name: str | None) -> None:
    """Fail before any training on combinations that cannot run (``encoder_name`` None: not known yet,
    because a checkpoint decides the architecture)."""
    unknown = set(cfg.inits) - set(KNOWN_INITS)
    if unknown:
        raise ConfigError(f"'inits': unknown {sorted(unknown)} (known: {', '.join(KNOWN_INITS)})")
    trained = _trained_protocols(cfg)
    for name, _, protocol, _ in trained:
        section = name.split("-")[0]
        extra = set(protocol.tasks or []) - set(cfg.tasks)
        if extra:
            raise ConfigError(f"'{section}.tasks' lists {sorted(extra)}, which are not in 'tasks'")
        extra = set(protocol.fractions or []) - set(cfg.fractions)
        if extra:
            raise ConfigError(f"'{section}.fractions' lists {sorted(extra)}, which are not in 'fractions'")
    lora = cfg.adapter.enabled and "lora" in cfg.adapter.modes
    if lora and encoder_name is not None and not is_vision_transformer(encoder_name):
        raise ConfigError(
            f"'adapter.modes' has 'lora', which needs attention blocks, but encoder '{encoder_name}' is not a ViT "
            "(use 'spectral' or 'first-layers')"
        )
    combos = cfg.combinations()
    fused = [c for c in combos if len(c) > 1]
    if fused and cfg.adapter.enabled:
        raise ConfigError(
            f"'adapter' protocols adapt one modality's encoder; 'modalities' has fused combinations "
            f"({', '.join('+'.join(c) for c in fused)}): disable 'adapter' or evaluate single modalities"
        )
    if fused and not cfg.fusion.modes:
        raise ConfigError("'fusion.modes' is empty but 'modalities' has combinations of several modalities")
    named = {m for c in combos for m in c}
    unknown_missing = sorted(set(cfg.fusion.missing_at_test) - named)
    if unknown_missing:
        raise ConfigError(f"'fusion.missing_at_test' lists {unknown_missing}, which no evaluated combination has")
    covered = set(_check_multitask(cfg)).union(*(p.tasks or cfg.tasks for _, _, p, _ in trained))
    for task in cfg.tasks:
        if TASKS[task].dense and task not in covered:
            raise ConfigError(
                f"task '{task}' is dense: enable a trained protocol for it (frozen, finetune, adapter or multitask); "
                "linear and knn work on pooled features only"
            )


def _check_multitask(cfg: EvaluateConfig) -> list[str]:
    """The tasks the ``multitask`` protocol trains together (none when disabled), checked against the plan."""
    mt = cfg.multitask
    if not mt.enabled:
        return []
    tasks = list(mt.tasks or cfg.tasks)
    if len(tasks) < 2:
        source = "" if mt.tasks else " (unset: every task of 'tasks')"
        raise ConfigError(f"'multitask.tasks' needs at least 2 tasks to learn together, got {tasks}{source}")
    extra = [t for t in tasks if t not in cfg.tasks]
    if extra:
        raise ConfigError(f"'multitask.tasks' lists {extra}, which are not in 'tasks' ({list(cfg.tasks)})")
    extra = sorted(set(mt.fractions or []) - set(cfg.fractions))
    if extra:
        raise ConfigError(f"'multitask.fractions' lists {extra}, which are not in 'fractions'")
    extra = sorted(set(mt.weights or {}) - set(tasks))
    if extra:
        raise ConfigError(f"'multitask.weights' has weights for {extra}, which are not in 'multitask.tasks' ({tasks})")
    return tasks


class _Grid:
    """Everything shared by the runs of one evaluation: data in memory, labelled subsets, result rows."""

    def __init__(self, cfg: EvaluateConfig) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.device = default_device() if cfg.accelerator == "auto" else torch.device(cfg.accelerator)
        self.tasks = [TASKS[t] for t in cfg.tasks]
        self.combinations = cfg.combinations()
        wanted = list(dict.fromkeys(m for combo in self.combinations for m in combo))
        images = [m for m in wanted if m != METADATA_MODALITY]
        dm = EODataModule(
            cfg.data.store,
            images,
            targets=sorted({t.target for t in self.tasks}),
            val=cfg.data.val,
            test=cfg.data.test,
            split_seed=cfg.data.split_seed,
            in_memory=cfg.data.in_memory,
        )
        self.store, self.splits = dm.store, dm.splits
        self.modalities = dict(self.store.modalities)
        self.stats = dict(self.store.stats)
        for name in images:
            if not self.modalities[name].continuous:
                raise ConfigError(f"'modalities': '{name}' is {self.modalities[name].kind}, not image bands")
        self.data = {split: dm.dataset(split).__getitems__(list(range(len(idx)))) for split, idx in dm.splits.items()}
        if METADATA_MODALITY in wanted:
            try:
                values, names = metadata_encoding(self.store.table, cfg.fusion.metadata)
            except MetadataError as exc:
                raise ConfigError(f"'fusion.metadata': {exc}") from None
            self.modalities[METADATA_MODALITY] = metadata_modality(names)
            self.stats[METADATA_MODALITY] = {"mean": [0.0] * len(names), "std": [1.0] * len(names)}
            size = self.data["train"][images[0]].shape[-1] if images else self.store.array("lulc").shape[-1]
            for split, idx in self.splits.items():
                self.data[split][METADATA_MODALITY] = torch.from_numpy(constant_planes(values[idx], size))
        self.modality, self.fusion, self.combo = "", "none", ()
        self._blanked: dict[tuple[str, str, str], torch.Tensor] = {}
        labels = self.store.table["label"].to_numpy()
        self.num_classes = len(self.store.class_names) or int(labels.max()) + 1
        # Every (fraction, seed) subset is drawn up front, so a bad fraction fails before any training.
        train = dm.splits["train"]
        position = {g: i for i, g in enumerate(train)}
        strata = {t.stratify for t in self.tasks}
        presence = self.store.read("multilabel") if "multilabel" in strata else None
        drawn: dict[tuple[str, float, int], np.ndarray] = {}
        for f in cfg.fractions:
            for s in cfg.seeds:
                if "label" in strata:
                    drawn["label", f, s] = label_fraction(labels, train, f, s)
                if presence is not None:
                    drawn["multilabel", f, s] = multilabel_fraction(presence, train, f, s)
        self.sample_ids = drawn
        self.subsets = {key: np.array([position[g] for g in idx]) for key, idx in drawn.items()}
        self.rows: list[dict] = []
        self.curves: list[dict] = []

    def use(self, combo: tuple[str, ...], fusion: str) -> str:
        """Make the stacked combination the grid's input (``data[split][name]``); return its name."""
        name = "+".join(combo)
        if len(combo) > 1:
            self.modalities[name] = stacked_modality(name, [self.modalities[m] for m in combo])
            for split in self.data:
                self.data[split][name] = torch.cat([self.data[split][m] for m in combo], dim=1)
        self.modality, self.fusion, self.combo = name, fusion, combo
        return name

    def missing_at_test(self) -> list[str]:
        """Modalities of the current fused combination to blank in extra test evaluations."""
        return [m for m in self.cfg.fusion.missing_at_test if len(self.combo) > 1 and m in self.combo]

    def blanked(self, split: str, absent: str) -> torch.Tensor:
        """The split's stacked input with modality ``absent`` missing (NaN) for every sample (built once
        per combination)."""
        key = (self.modality, split, absent)
        if key not in self._blanked:
            self._blanked[key] = self._blank(split, absent)
        return self._blanked[key]

    def _blank(self, split: str, absent: str) -> torch.Tensor:
        x = self.data[split][self.modality].clone()
        start = sum(self.modalities[m].num_bands for m in self.combo[: self.combo.index(absent)])
        x[:, start : start + self.modalities[absent].num_bands] = float("nan")
        return x

    def release(self, combo: tuple[str, ...]) -> None:
        """Free the stacked copy of a combination (and its blanked copies)."""
        self._blanked.clear()
        if len(combo) > 1:
            for split in self.data:
                self.data[split].pop("+".join(combo), None)

    def save_subsets(self) -> None:
        """``label_subsets.json``: the store sample indices of every labelled subset, per stratification."""
        saved: dict = {}
        for (stratify, fraction, seed), idx in self.sample_ids.items():
            saved.setdefault(stratify, {}).setdefault(f"{fraction:g}", {})[str(seed)] = idx.tolist()
        write_text_atomic(
            self.out / "label_subsets.json", json.dumps({"split_seed": self.cfg.data.split_seed, "subsets": saved})
        )

    def subset(self, task: Task, fraction: float, seed: int) -> np.ndarray:
        return self.subsets[task.stratify, fraction, seed]

    def features(self, tag: str, compute: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
        """Features of every split, cached under ``out/features`` keyed by ``tag``, store and split members."""
        return {
            split: cached(
                self.out
                / "features"
                / f"{tag.split(':')[0]}-{split}-{cache_key(self.store.path, tag, idx.tobytes())}.pt",
                lambda split=split: compute(self.data[split][self.modality]),
            )
            for split, idx in self.splits.items()
        }

    def add(self, init: str, protocol: str, task: str, fraction: float, seed: int, metrics: dict, **extra) -> None:
        for metric, value in metrics.items():
            self.rows.append(
                {
                    "init": init, "protocol": protocol, "task": task, "fraction": fraction, "seed": seed,
                    "metric": metric, "value": value, "modality": self.modality, "fusion": self.fusion, "missing": "",
                    "schema_version": SCHEMA_VERSION, **extra,
                }
            )  # fmt: skip

    def _runs(
        self, kinds: tuple[str, ...] | None = None, tasks: list[str] | None = None, fractions: list[float] | None = None
    ):
        for task in self.tasks:
            if (kinds is None or task.kind in kinds) and (tasks is None or task.name in tasks):
                for fraction in fractions or self.cfg.fractions:
                    for seed in self.cfg.seeds:
                        yield task, fraction, seed, self.subset(task, fraction, seed)

    def linear_probe(self, init: str, feats: dict[str, torch.Tensor], encoder_name: str) -> None:
        """Logistic (ridge) regression per task, fraction and seed; weight decay picked on the validation split."""
        for task, fraction, seed, subset in self._runs(FEATURE_PROTOCOLS["linear"]):
            best_score, best = -np.inf, None
            for wd in self.cfg.linear.weight_decays:
                probe = fit_linear(
                    feats["train"][subset], self.data["train"][task.target][subset], task.kind, wd,
                    self.cfg.linear.max_iter,
                )  # fmt: skip
                value = task.metrics(probe.logits(feats["val"]), self.data["val"][task.target], self.num_classes)
                score = value[task.primary] if task.higher_is_better else -value[task.primary]
                if score > best_score:
                    best_score, best = score, probe
            test = task.metrics(best.logits(feats["test"]), self.data["test"][task.target], self.num_classes)
            self.add(
                init, "linear", task.name, fraction, seed, test, encoder=encoder_name, num_labels=len(subset),
                trainable_params=0, head_params=sum(p.numel() for p in best.layer.parameters()),
                weight_decay=best.weight_decay,
            )  # fmt: skip

    def _knn_logits(self, task: Task, bank: torch.Tensor, subset: np.ndarray, query: torch.Tensor, k: int):
        """kNN class probabilities turned into logits, so the classification metrics apply unchanged."""
        targets = self.data["train"][task.target][subset]
        scores = knn_scores(bank[subset], targets, query, k, self.cfg.knn.temperature, self.num_classes)
        scores = scores.clamp(1e-6, 1 - 1e-6)
        return (scores / (1 - scores)).log() if task.kind == "multilabel" else scores.log()

    def knn_probe(self, init: str, feats: dict[str, torch.Tensor], encoder_name: str) -> None:
        """Weighted cosine kNN per task, fraction and seed; k picked on the validation split."""
        for task, fraction, seed, subset in self._runs(FEATURE_PROTOCOLS["knn"]):
            val = {
                k: task.metrics(
                    self._knn_logits(task, feats["train"], subset, feats["val"], k), self.data["val"][task.target],
                    self.num_classes,
                )[task.primary]
                for k in self.cfg.knn.ks
            }  # fmt: skip
            best_k = max(val, key=val.get)
            logits = self._knn_logits(task, feats["train"], subset, feats["test"], best_k)
            test = task.metrics(logits, self.data["test"][task.target], self.num_classes)
            self.add(
                init, "knn", task.name, fraction, seed, test, encoder=encoder_name, num_labels=len(subset),
                trainable_params=0, head_params=0, k=best_k,
            )  # fmt: skip

    def trained(
        self,
        init: str,
        protocol: str,
        mode: str,
        pcfg: TrainedProtocolConfig,
        options: dict,
        encoder: torch.nn.Module,
        normalizer: BandNormalizer,
        encoder_name: str,
    ) -> None:
        """Head (and the protocol's share of the encoder) trained per task, fraction and seed."""
        images, modality = self.data["train"][self.modality], self.modalities[self.modality]
        for task, fraction, seed, subset in self._runs(tasks=pcfg.tasks or self.cfg.tasks, fractions=pcfg.fractions):
            result = train_task_model(
                encoder, normalizer, modality, task, self.num_classes,
                (images[subset], self.data["train"][task.target][subset]),
                (self.data["val"][self.modality], self.data["val"][task.target]),
                pcfg, mode, accelerator=self.cfg.accelerator, seed=seed, adapter_options=options,
            )  # fmt: skip
            outputs = predict(result.model, self.data["test"][self.modality], self.device)
            degraded = {a: predict(result.model, self.blanked("test", a), self.device) for a in self.missing_at_test()}
            extra = {
                "encoder": encoder_name, "num_labels": len(subset), "trainable_params": result.trainable_encoder_params,
                "head_params": result.head_params, "steps": result.steps, "best_step": result.best_step,
            }  # fmt: skip
            last = max(pcfg.fractions or self.cfg.fractions)
            self.record(init, protocol, task, fraction, seed, outputs, degraded, result.history, extra, last)

    def record(
        self, init: str, protocol: str, task: Task, fraction: float, seed: int, outputs: torch.Tensor,
        degraded: dict[str, torch.Tensor], curve: list[dict], extra: dict, last_fraction: float,
    ) -> None:  # fmt: skip
        """One trained model's results on ``task``: test rows, rows with a modality missing (``degraded``:
        modality -> outputs), its learning curve and, for dense tasks, prediction maps (first seed, largest
        fraction)."""
        target = self.data["test"][task.target]
        self.add(init, protocol, task.name, fraction, seed, task.metrics(outputs, target, self.num_classes), **extra)
        for absent, out in degraded.items():
            metrics = task.metrics(out, target, self.num_classes)
            self.add(init, protocol, task.name, fraction, seed, metrics, missing=absent, **extra)
        for point in curve:
            self.curves.append(
                {"init": init, "protocol": protocol, "task": task.name, "fraction": fraction, "seed": seed,
                 "metric": task.primary, **point}
            )  # fmt: skip
        if task.dense and seed == self.cfg.seeds[0] and fraction == last_fraction:
            self.save_predictions(task, f"{protocol}-{init}", outputs)

    def multitask(
        self,
        init: str,
        encoder: torch.nn.Module,
        normalizer: BandNormalizer,
        encoder_name: str,
        log: Callable[[str], None] = print,
    ) -> None:
        """Multi-task learning: one model with a head per task of ``multitask.tasks`` per fraction and seed.

        The model trains on the label subset of the first listed task's stratification (the subset the
        single-task protocols use for that task; for tasks stratified otherwise, another subset of the same
        fraction, equal in size up to per-class rounding). Rows and learning curves are written per task,
        as for the single-task protocols, under ``multitask.protocol_name``; the effective loss weights of
        each run go to ``log``.
        """
        mcfg = self.cfg.multitask
        tasks = [TASKS[t] for t in mcfg.tasks or self.cfg.tasks]
        protocol, fractions = mcfg.protocol_name, mcfg.fractions or self.cfg.fractions
        images, modality = self.data["train"][self.modality], self.modalities[self.modality]
        for fraction in fractions:
            for seed in self.cfg.seeds:
                subset = self.subset(tasks[0], fraction, seed)
                result = train_multitask_model(
                    encoder, normalizer, modality, tasks, self.num_classes,
                    (images[subset], {t.name: self.data["train"][t.target][subset] for t in tasks}),
                    (self.data["val"][self.modality], {t.name: self.data["val"][t.target] for t in tasks}),
                    mcfg, mcfg.mode, accelerator=self.cfg.accelerator, seed=seed, weighting=mcfg.weighting,
                    weights=mcfg.weights,
                )  # fmt: skip
                outputs = predict_tasks(result.model, self.data["test"][self.modality], self.device)
                degraded = {
                    absent: predict_tasks(result.model, self.blanked("test", absent), self.device)
                    for absent in self.missing_at_test()
                }
                for task in tasks:
                    extra = {
                        "encoder": encoder_name, "num_labels": len(subset),
                        "trainable_params": result.trainable_encoder_params,
                        "head_params": result.head_params[task.name], "steps": result.steps,
                        "best_step": result.best_step,
                    }  # fmt: skip
                    lost = {absent: out[task.name] for absent, out in degraded.items()}
                    self.record(init, protocol, task, fraction, seed, outputs[task.name], lost,
                                result.curves[task.name], extra, max(fractions))  # fmt: skip
                weights = ", ".join(f"{t} {w:.3g}" for t, w in result.loss_weights.items())
                log(f"  {self.modality:<14} {init:<12} {protocol:<16} {fraction:g} seed {seed}: loss weights {weights}")

    def save_predictions(self, task: Task, name: str, outputs: torch.Tensor) -> None:
        """Maps of ``prediction_maps`` test samples from distinct locations (and, once, their inputs and
        truth) for the report."""
        if self.cfg.prediction_maps == 0:
            return
        test = self.splits["test"]
        locations = self.store.table["location_id"].to_numpy()[test] if "location_id" in self.store.table else test
        picks = torch.from_numpy(np.sort(np.unique(locations, return_index=True)[1])[: self.cfg.prediction_maps])
        folder = self.out / "predictions"
        inputs = {
            "images": self.data["test"][self.modality][picks], "truth": self.data["test"][task.target][picks],
            "bands": list(self.modalities[self.modality].bands), "class_names": list(self.store.class_names),
        }  # fmt: skip
        save_atomic(inputs, folder / f"{task.name}-inputs.pt")  # rewritten: a rerun must not show stale maps
        save_atomic(outputs[picks].argmax(1).to(torch.uint8), folder / f"{task.name}-{name}.pt")

    def results(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=RESULT_COLUMNS)

    def flush(self) -> None:
        write_csv_atomic(self.results(), self.out / "results.csv")
        write_csv_atomic(pd.DataFrame(self.curves, columns=CURVE_COLUMNS), self.out / "curves.csv")


def _settings(cfg: EvaluateConfig, combinations: list[tuple[str, ...]]) -> list[tuple[tuple[str, ...], str]]:
    """(combination, fusion mode) pairs: single modalities unfused, combinations once per fusion mode."""
    return [(combo, "none") for combo in combinations if len(combo) == 1] + [
        (combo, mode) for combo in combinations if len(combo) > 1 for mode in cfg.fusion.modes
    ]


def _evaluate_init(grid: _Grid, encoders: _Encoders, init: str, log: Callable[[str], None]) -> None:
    """Every enabled protocol for one init of the grid's current combination."""
    cfg = grid.cfg
    label, setting = encoders.label(init), f"{grid.modality}" + ("" if grid.fusion == "none" else f" {grid.fusion}")
    if init == "image-stats":
        feats = grid.features(f"image-stats:{setting}", image_statistics)
        if cfg.linear.enabled:
            grid.linear_probe(label, feats, "image-stats")
        if cfg.knn.enabled:
            grid.knn_probe(label, feats, "image-stats")
        return
    encoder, normalizer = encoders.build(init)
    if grid.fusion != "none":
        set_sensor_dropout(encoder, cfg.fusion.sensor_dropout)
    if cfg.linear.enabled or cfg.knn.enabled:
        source = {"checkpoint": cfg.checkpoint, "external": cfg.external and cfg.external.weights_file}.get(init)
        tag = f"{source}:{Path(source).stat().st_mtime_ns}" if source else ""  # a replaced file is re-encoded
        feats = grid.features(
            f"{label}:{setting}:{tag}", lambda x: encode(encoder, normalizer, grid.modality, x, grid.device)
        )
        if cfg.linear.enabled:
            grid.linear_probe(label, feats, encoders.encoder_name)
        if cfg.knn.enabled:
            grid.knn_probe(label, feats, encoders.encoder_name)
    for protocol, mode, pcfg, options in _trained_protocols(cfg):
        started = time.perf_counter()
        grid.trained(label, protocol, mode, pcfg, options, encoder, normalizer, encoders.encoder_name)
        log(f"  {setting:<14} {label:<12} {protocol:<16} {time.perf_counter() - started:.0f}s")
        grid.flush()
    # --- multi-task learning: one encoder, one head per task (see _Grid.multitask) ---
    if cfg.multitask.enabled:
        started = time.perf_counter()
        grid.multitask(label, encoder, normalizer, encoders.encoder_name, log)
        log(f"  {setting:<14} {label:<12} {cfg.multitask.protocol_name:<16} {time.perf_counter() - started:.0f}s")
        grid.flush()
    # --- end multi-task learning ---


def run_evaluate(cfg: EvaluateConfig, log: Callable[[str], None] = print) -> pd.DataFrame:
    """Run the whole grid; write ``results.csv``, ``curves.csv``, ``label_subsets.json``, the report and
    its plots into ``cfg.out``."""
    _check_plan(cfg, None if "checkpoint" in cfg.inits else cfg.encoder.name)
    quiet_lightning()
    grid = _Grid(cfg)
    grid.out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, grid.out / "config.yaml")
    grid.save_subsets()
    pretrained: dict[str, PretrainedEncoder] = {}
    if "checkpoint" in cfg.inits:
        if cfg.checkpoint is None:
            raise ConfigError("'inits' contains 'checkpoint' but 'checkpoint' is not set")
        pretrained = load_pretrained_encoders(cfg.checkpoint)
        _check_plan(cfg, next(iter(pretrained.values())).encoder_name)
    for combo, fusion in _settings(cfg, grid.combinations):
        grid.use(combo, fusion)
        encoders = _Encoders(cfg, grid, combo, fusion, pretrained)
        for init in cfg.inits:
            reason = encoders.unavailable(init)
            if reason:
                log(f"  {grid.modality} {fusion}: init '{init}' skipped: {reason}")
                continue
            started = time.perf_counter()
            _evaluate_init(grid, encoders, init, log)
            log(f"  {grid.modality:<14} {encoders.label(init):<12} evaluated in {time.perf_counter() - started:.0f}s")
            grid.flush()
        grid.release(combo)
    results = grid.results()
    write_report(results, grid.out, cfg)
    return results
