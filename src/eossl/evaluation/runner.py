"""``eossl evaluate``: every init x protocol x task x label fraction x seed on the same splits.

Inits: ``checkpoint`` (the pretrained encoder, reported under its method's name, e.g. ``simclr``),
``random`` (same architecture, random weights, BatchNorm statistics re-estimated on the unlabelled
training images so the baseline is not handicapped by un-calibrated normalisation) and
``image-stats`` (per-band mean/std/percentiles; linear protocol only).
Protocols: ``linear`` (logistic regression on cached frozen features, weight decay chosen on the
validation split), ``knn`` (weighted cosine kNN on the same cached features, k chosen on the
validation split) and ``finetune`` (encoder + head trained end to end).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from eossl.config import ConfigError, EvaluateConfig, dump_config
from eossl.data.datamodule import EODataModule
from eossl.data.normalize import BandNormalizer
from eossl.data.splits import label_fraction
from eossl.evaluation.features import cache_key, cached, encode, image_statistics, recalibrate_batchnorm
from eossl.evaluation.finetune import finetune, predict
from eossl.evaluation.knn import knn_scores
from eossl.evaluation.linear_probe import fit_linear
from eossl.evaluation.metrics import TASK_TARGET, classification_metrics
from eossl.evaluation.report import PRIMARY_METRIC, write_report
from eossl.methods.pretrain import PretrainedEncoder, load_pretrained_encoder
from eossl.models.encoders import encoder_from_config
from eossl.training import default_device, quiet_lightning

RESULT_COLUMNS = [
    "init",
    "protocol",
    "task",
    "fraction",
    "seed",
    "metric",
    "value",
    "encoder",
    "modality",
    "num_labels",
    "trainable_params",
    "weight_decay",
    "k",
]


def _write_csv_atomic(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)


class _Encoders:
    """The encoder inits of one evaluation; ``random`` copies the checkpoint's architecture when given."""

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

    @property
    def encoder_name(self) -> str:
        return self.encoder_config["name"]

    def names(self) -> list[str]:
        return [self.pretrained.method if init == "checkpoint" else init for init in self.cfg.inits]

    def build(self, init: str) -> tuple[torch.nn.Module, BandNormalizer]:
        if self.pretrained is not None and init == self.pretrained.method:
            return self.pretrained.encoder, self.pretrained.normalizer
        torch.manual_seed(0)
        encoder = encoder_from_config(self.encoder_config, self.train_images.shape[1])
        normalizer = BandNormalizer({self.modality: self.stats}, [self.modality])
        recalibrate_batchnorm(encoder, normalizer, self.modality, self.train_images, self.device)
        return encoder, normalizer


class _Grid:
    """Everything shared by the runs of one evaluation: data in memory, labelled subsets, result rows."""

    def __init__(self, cfg: EvaluateConfig) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.device = default_device() if cfg.accelerator == "auto" else torch.device(cfg.accelerator)
        dm = EODataModule(
            cfg.data.store,
            [cfg.data.modality],
            targets=["label", "multilabel"],
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
        position = {g: i for i, g in enumerate(dm.splits["train"])}
        self.subsets = {
            (f, s): np.array([position[g] for g in label_fraction(labels, dm.splits["train"], f, s)])
            for f in cfg.fractions
            for s in cfg.seeds
        }
        self.rows: list[dict] = []

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

    def add(
        self,
        init: str,
        protocol: str,
        task: str,
        fraction: float,
        seed: int,
        metrics: dict[str, float],
        **extra: object,
    ) -> None:
        for metric, value in metrics.items():
            self.rows.append(
                {
                    "init": init,
                    "protocol": protocol,
                    "task": task,
                    "fraction": fraction,
                    "seed": seed,
                    "metric": metric,
                    "value": value,
                    "modality": self.modality,
                    **extra,
                }
            )

    def linear_probe(self, init: str, feats: dict[str, torch.Tensor], encoder_name: str) -> None:
        """Logistic regression per task, fraction and seed; weight decay picked on the validation split."""
        for task in self.cfg.tasks:
            target, multilabel = TASK_TARGET[task], task == "multi-label"
            for (fraction, seed), subset in self.subsets.items():
                best_score, best = -1.0, None
                for wd in self.cfg.linear.weight_decays:
                    probe = fit_linear(
                        feats["train"][subset],
                        self.data["train"][target][subset],
                        multilabel,
                        wd,
                        self.cfg.linear.max_iter,
                    )
                    val = classification_metrics(
                        task, probe.logits(feats["val"]), self.data["val"][target], self.num_classes
                    )
                    if val[PRIMARY_METRIC[task]] > best_score:
                        best_score, best = val[PRIMARY_METRIC[task]], probe
                test = classification_metrics(
                    task, best.logits(feats["test"]), self.data["test"][target], self.num_classes
                )
                self.add(
                    init,
                    "linear",
                    task,
                    fraction,
                    seed,
                    test,
                    encoder=encoder_name,
                    num_labels=len(subset),
                    trainable_params=sum(p.numel() for p in best.layer.parameters()),
                    weight_decay=best.weight_decay,
                )

    def _knn_logits(self, task: str, bank: torch.Tensor, subset: np.ndarray, query: torch.Tensor, k: int):
        """kNN class probabilities turned into logits, so the classification metrics apply unchanged."""
        targets = self.data["train"][TASK_TARGET[task]][subset]
        scores = knn_scores(bank[subset], targets, query, k, self.cfg.knn.temperature, self.num_classes)
        scores = scores.clamp(1e-6, 1 - 1e-6)
        return (scores / (1 - scores)).log() if task == "multi-label" else scores.log()

    def knn_probe(self, init: str, feats: dict[str, torch.Tensor], encoder_name: str) -> None:
        """Weighted cosine kNN per task, fraction and seed; k picked on the validation split."""
        for task in self.cfg.tasks:
            target, primary = TASK_TARGET[task], PRIMARY_METRIC[task]
            for (fraction, seed), subset in self.subsets.items():
                val = {
                    k: classification_metrics(
                        task, self._knn_logits(task, feats["train"], subset, feats["val"], k),
                        self.data["val"][target], self.num_classes,
                    )[primary]
                    for k in self.cfg.knn.ks
                }  # fmt: skip
                best_k = max(val, key=val.get)
                logits = self._knn_logits(task, feats["train"], subset, feats["test"], best_k)
                test = classification_metrics(task, logits, self.data["test"][target], self.num_classes)
                self.add(
                    init, "knn", task, fraction, seed, test, encoder=encoder_name, num_labels=len(subset),
                    trainable_params=0, k=best_k,
                )  # fmt: skip

    def finetune(self, init: str, encoder: torch.nn.Module, normalizer: BandNormalizer, encoder_name: str) -> None:
        """Encoder + head trained end to end per task, fraction and seed."""
        images = self.data["train"][self.modality]
        for task in self.cfg.finetune.tasks or self.cfg.tasks:
            target, multilabel = TASK_TARGET[task], task == "multi-label"
            for (fraction, seed), subset in self.subsets.items():
                model = finetune(
                    encoder,
                    normalizer,
                    self.store.modalities[self.modality],
                    images[subset],
                    self.data["train"][target][subset],
                    multilabel,
                    self.num_classes,
                    self.cfg.finetune,
                    accelerator=self.cfg.accelerator,
                    seed=seed,
                )
                logits = predict(model, self.data["test"][self.modality], self.device)
                test = classification_metrics(task, logits, self.data["test"][target], self.num_classes)
                self.add(
                    init,
                    "finetune",
                    task,
                    fraction,
                    seed,
                    test,
                    encoder=encoder_name,
                    num_labels=len(subset),
                    trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
                )

    def results(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=RESULT_COLUMNS)


def run_evaluate(cfg: EvaluateConfig, log: Callable[[str], None] = print) -> pd.DataFrame:
    """Run the whole grid; write ``results.csv``, ``report.md``, ``label_efficiency.png`` into ``cfg.out``."""
    unknown = set(cfg.inits) - {"checkpoint", "random", "image-stats"}
    if unknown:
        raise ConfigError(f"'inits': unknown {sorted(unknown)} (known: checkpoint, random, image-stats)")
    quiet_lightning()
    grid = _Grid(cfg)
    grid.out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, grid.out / "config.yaml")
    train_images = grid.data["train"][grid.modality]
    encoders = _Encoders(cfg, grid.store.stats[grid.modality], grid.modality, train_images, grid.device)
    ckpt_tag = f"{cfg.checkpoint}:{Path(cfg.checkpoint).stat().st_mtime_ns}" if encoders.pretrained else ""
    for init in encoders.names():
        started = time.perf_counter()
        if init == "image-stats":
            feats = grid.features("image-stats", image_statistics)
            if cfg.linear.enabled:
                grid.linear_probe(init, feats, "image-stats")
            if cfg.knn.enabled:
                grid.knn_probe(init, feats, "image-stats")
        else:
            encoder, normalizer = encoders.build(init)
            feats = grid.features(
                f"{init}:{ckpt_tag}", lambda x, e=encoder, n=normalizer: encode(e, n, grid.modality, x, grid.device)
            )
            if cfg.linear.enabled:
                grid.linear_probe(init, feats, encoders.encoder_name)
            if cfg.knn.enabled:
                grid.knn_probe(init, feats, encoders.encoder_name)
            if cfg.finetune.enabled:
                grid.finetune(init, encoder, normalizer, encoders.encoder_name)
        log(f"  {init:<12} evaluated in {time.perf_counter() - started:.0f}s")
        _write_csv_atomic(grid.results(), grid.out / "results.csv")
    results = grid.results()
    write_report(results, grid.out, cfg)
    return results
