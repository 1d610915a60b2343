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
from eossl.data.normalize import BandNormalizer
from eossl.data.splits import label_fraction, multilabel_fraction
from eossl.evaluation.features import cache_key, cached, encode, image_statistics, recalibrate_batchnorm, save_atomic
from eossl.evaluation.finetune import predict, train_task_model
from eossl.evaluation.knn import knn_scores
from eossl.evaluation.linear_probe import fit_linear
from eossl.evaluation.report import write_report
from eossl.evaluation.results import CURVE_COLUMNS, RESULT_COLUMNS, SCHEMA_VERSION, write_csv_atomic
from eossl.evaluation.tasks import TASKS, Task
from eossl.io import write_text_atomic
from eossl.methods.pretrain import PretrainedEncoder, load_pretrained_encoder
from eossl.models.encoders import encoder_from_config, is_vision_transformer
from eossl.training import default_device, quiet_lightning

FEATURE_PROTOCOLS = {"linear": ("classification", "multilabel", "regression"), "knn": ("classification", "multilabel")}
KNOWN_INITS = ("checkpoint", "random", "external", "image-stats")


class _Encoders:
    """The encoder inits of one evaluation; baselines copy the checkpoint's architecture when given."""

    def __init__(
        self, cfg: EvaluateConfig, stats: dict, modality: str, train_images: torch.Tensor, device: torch.device
    ) -> None:
        self.cfg, self.stats, self.modality, self.device = cfg, stats, modality, device
        self.train_images = train_images
        self.encoder_config = cfg.encoder.with_img_size(train_images.shape[-1]).model_dump()
        self.pretrained: PretrainedEncoder | None = None
        if "checkpoint" in cfg.inits:
            if cfg.checkpoint is None:
                raise ConfigError("'inits' contains 'checkpoint' but 'checkpoint' is not set")
            self.pretrained = load_pretrained_encoder(cfg.checkpoint)
            if self.pretrained.modality != modality:
                raise ConfigError(
                    f"checkpoint '{cfg.checkpoint}' was pretrained on modality "
                    f"'{self.pretrained.modality}', but 'data.modality' is '{modality}'"
                )
            self.encoder_config = self.pretrained.encoder_config
        if "external" in cfg.inits and cfg.external is None:
            raise ConfigError("'inits' contains 'external' but 'external.weights_file' is not set")

    @property
    def encoder_name(self) -> str:
        return self.encoder_config["name"]

    def label(self, init: str) -> str:
        """The name an init is reported under."""
        if init == "checkpoint":
            return self.pretrained.method
        return self.cfg.external.label if init == "external" else init

    def build(self, init: str) -> tuple[torch.nn.Module, BandNormalizer]:
        if init == "checkpoint":
            return self.pretrained.encoder, self.pretrained.normalizer
        torch.manual_seed(0)
        config = dict(self.encoder_config)
        if init == "external":
            config["weights_file"] = str(self.cfg.external.weights_file)
        encoder = encoder_from_config(config, self.train_images.shape[1])
        normalizer = BandNormalizer({self.modality: self.stats}, [self.modality])
        recalibrate_batchnorm(encoder, normalizer, self.modality, self.train_images, self.device)
        return encoder, normalizer


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
    for task in cfg.tasks:
        if TASKS[task].dense and not any(task in (p.tasks or cfg.tasks) for _, _, p, _ in trained):
            raise ConfigError(
                f"task '{task}' is dense: enable a trained protocol for it (frozen, finetune or adapter); "
                "linear and knn work on pooled features only"
            )


class _Grid:
    """Everything shared by the runs of one evaluation: data in memory, labelled subsets, result rows."""

    def __init__(self, cfg: EvaluateConfig) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.device = default_device() if cfg.accelerator == "auto" else torch.device(cfg.accelerator)
        self.tasks = [TASKS[t] for t in cfg.tasks]
        dm = EODataModule(
            cfg.data.store,
            [cfg.data.modality],
            targets=sorted({t.target for t in self.tasks}),
            val=cfg.data.val,
            test=cfg.data.test,
            split_seed=cfg.data.split_seed,
            in_memory=cfg.data.in_memory,
        )
        self.store, self.modality, self.splits = dm.store, cfg.data.modality, dm.splits
        labels = self.store.table["label"].to_numpy()
        self.num_classes = len(self.store.class_names) or int(labels.max()) + 1
        self.data = {split: dm.dataset(split).__getitems__(list(range(len(idx)))) for split, idx in dm.splits.items()}
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
                    "metric": metric, "value": value, "modality": self.modality,
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
        images, modality = self.data["train"][self.modality], self.store.modalities[self.modality]
        for task, fraction, seed, subset in self._runs(tasks=pcfg.tasks or self.cfg.tasks, fractions=pcfg.fractions):
            result = train_task_model(
                encoder, normalizer, modality, task, self.num_classes,
                (images[subset], self.data["train"][task.target][subset]),
                (self.data["val"][self.modality], self.data["val"][task.target]),
                pcfg, mode, accelerator=self.cfg.accelerator, seed=seed, adapter_options=options,
            )  # fmt: skip
            outputs = predict(result.model, self.data["test"][self.modality], self.device)
            test = task.metrics(outputs, self.data["test"][task.target], self.num_classes)
            self.add(
                init, protocol, task.name, fraction, seed, test, encoder=encoder_name, num_labels=len(subset),
                trainable_params=result.trainable_encoder_params, head_params=result.head_params,
                steps=result.steps, best_step=result.best_step,
            )  # fmt: skip
            for point in result.history:
                self.curves.append(
                    {"init": init, "protocol": protocol, "task": task.name, "fraction": fraction, "seed": seed,
                     "metric": task.primary, **point}
                )  # fmt: skip
            if task.dense and seed == self.cfg.seeds[0] and fraction == max(pcfg.fractions or self.cfg.fractions):
                self.save_predictions(task, f"{protocol}-{init}", outputs)

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
            "bands": list(self.store.modalities[self.modality].bands), "class_names": list(self.store.class_names),
        }  # fmt: skip
        save_atomic(inputs, folder / f"{task.name}-inputs.pt")  # rewritten: a rerun must not show stale maps
        save_atomic(outputs[picks].argmax(1).to(torch.uint8), folder / f"{task.name}-{name}.pt")

    def results(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=RESULT_COLUMNS)

    def flush(self) -> None:
        write_csv_atomic(self.results(), self.out / "results.csv")
        write_csv_atomic(pd.DataFrame(self.curves, columns=CURVE_COLUMNS), self.out / "curves.csv")


def run_evaluate(cfg: EvaluateConfig, log: Callable[[str], None] = print) -> pd.DataFrame:
    """Run the whole grid; write ``results.csv``, ``curves.csv``, ``label_subsets.json``, the report and
    its plots into ``cfg.out``."""
    _check_plan(cfg, None if "checkpoint" in cfg.inits else cfg.encoder.name)
    quiet_lightning()
    grid = _Grid(cfg)
    grid.out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, grid.out / "config.yaml")
    grid.save_subsets()
    train_images = grid.data["train"][grid.modality]
    encoders = _Encoders(cfg, grid.store.stats[grid.modality], grid.modality, train_images, grid.device)
    _check_plan(cfg, encoders.encoder_name)
    weights = {"checkpoint": cfg.checkpoint, "external": cfg.external and cfg.external.weights_file}
    trained = _trained_protocols(cfg)
    for init in cfg.inits:
        label, started = encoders.label(init), time.perf_counter()
        if init == "image-stats":
            feats = grid.features("image-stats", image_statistics)
            if cfg.linear.enabled:
                grid.linear_probe(label, feats, "image-stats")
            if cfg.knn.enabled:
                grid.knn_probe(label, feats, "image-stats")
        else:
            encoder, normalizer = encoders.build(init)
            if cfg.linear.enabled or cfg.knn.enabled:
                source = weights.get(init)  # the file's path and mtime: a replaced file is re-encoded
                tag = f"{source}:{Path(source).stat().st_mtime_ns}" if source else ""
                feats = grid.features(
                    f"{label}:{tag}", lambda x, e=encoder, n=normalizer: encode(e, n, grid.modality, x, grid.device)
                )
                if cfg.linear.enabled:
                    grid.linear_probe(label, feats, encoders.encoder_name)
                if cfg.knn.enabled:
                    grid.knn_probe(label, feats, encoders.encoder_name)
            for protocol, mode, pcfg, options in trained:
                protocol_started = time.perf_counter()
                grid.trained(label, protocol, mode, pcfg, options, encoder, normalizer, encoders.encoder_name)
                log(f"  {label:<12} {protocol:<16} {time.perf_counter() - protocol_started:.0f}s")
                grid.flush()
        log(f"  {label:<12} evaluated in {time.perf_counter() - started:.0f}s")
        grid.flush()
    results = grid.results()
    write_report(results, grid.out, cfg)
    return results
