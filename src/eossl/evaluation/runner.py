"""``eossl evaluate``: every init x protocol x task x label fraction x seed on the same splits.

Inits: ``checkpoint`` (the pretrained encoder, reported under its method's name, e.g. ``simclr``),
``random`` (same architecture, random weights, BatchNorm statistics re-estimated on the unlabelled
training images so the baseline is not handicapped by un-calibrated normalisation) and
``image-stats`` (per-band mean/std/percentiles; linear protocol only).
Protocols: ``linear`` (logistic regression on cached frozen features, weight decay chosen on the
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
from eossl.evaluation.linear_probe import fit_linear
from eossl.evaluation.metrics import TASK_TARGET, classification_metrics
from eossl.evaluation.report import PRIMARY_METRIC, write_report
from eossl.methods.pretrain import PretrainedEncoder, load_pretrained_encoder
from eossl.models.encoders import build_encoder
from eossl.training import default_device

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
        self.encoder_name, self.stem = cfg.encoder.name, cfg.encoder.stem
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
            self.encoder_name, self.stem = self.pretrained.encoder_name, self.pretrained.stem

    def names(self) -> list[str]:
        return [self.pretrained.method if init == "checkpoint" else init for init in self.cfg.inits]

    def build(self, init: str) -> tuple[torch.nn.Module, BandNormalizer]:
        if self.pretrained is not None and init == self.pretrained.method:
            return self.pretrained.encoder, self.pretrained.normalizer
        torch.manual_seed(0)
        encoder = build_encoder(self.encoder_name, self.train_images.shape[1], self.stem)
        normalizer = BandNormalizer({self.modality: self.stats}, [self.modality])
        recalibrate_batchnorm(encoder, normalizer, self.modality, self.train_images, self.device)
        return encoder, normalizer


def run_evaluate(cfg: EvaluateConfig, log: Callable[[str], None] = print) -> pd.DataFrame:
    """Run the whole grid; write ``results.csv``, ``report.md``, ``label_efficiency.png`` into ``cfg.out``."""
    unknown = set(cfg.inits) - {"checkpoint", "random", "image-stats"}
    if unknown:
        raise ConfigError(f"'inits': unknown {sorted(unknown)} (known: checkpoint, random, image-stats)")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    device = default_device() if cfg.accelerator == "auto" else torch.device(cfg.accelerator)
    dm = EODataModule(
        cfg.data.store,
        [cfg.data.modality],
        targets=["label", "multilabel"],
        val=cfg.data.val,
        test=cfg.data.test,
        split_seed=cfg.data.split_seed,
        in_memory=cfg.data.in_memory,
    )
    store, modality = dm.store, cfg.data.modality
    labels = store.table["label"].to_numpy()
    num_classes = len(store.class_names) or int(labels.max()) + 1
    data = {split: dm.dataset(split).__getitems__(list(range(len(dm.splits[split])))) for split in dm.splits}
    train_index = dm.splits["train"]
    position = {g: i for i, g in enumerate(train_index)}
    # Check every (fraction, seed) subset up front so a bad fraction fails before hours of work.
    subsets = {
        (f, s): np.array([position[g] for g in label_fraction(labels, train_index, f, s)])
        for f in cfg.fractions
        for s in cfg.seeds
    }
    encoders = _Encoders(cfg, store.stats[modality], modality, data["train"][modality], device)
    ckpt_tag = f"{cfg.checkpoint}:{Path(cfg.checkpoint).stat().st_mtime_ns}" if cfg.checkpoint else "none"
    rows: list[dict] = []

    def add(init, protocol, task, fraction, seed, metrics, extra):
        for metric, value in metrics.items():
            rows.append(
                {
                    "init": init,
                    "protocol": protocol,
                    "task": task,
                    "fraction": fraction,
                    "seed": seed,
                    "metric": metric,
                    "value": value,
                    "encoder": extra.get("encoder", ""),
                    "modality": modality,
                    "num_labels": extra["num_labels"],
                    "trainable_params": extra["trainable_params"],
                    "weight_decay": extra.get("wd", ""),
                }
            )

    for init in encoders.names():
        started = time.perf_counter()
        if init == "image-stats":
            feats = {
                s: cached(
                    out / "features" / f"image-stats-{s}-{cache_key(store.path, dm.splits[s].tobytes())}.pt",
                    lambda s=s: image_statistics(data[s][modality]),
                )
                for s in data
            }
            encoder = None
        else:
            encoder, normalizer = encoders.build(init)
            feats = {
                s: cached(
                    out / "features" / f"{init}-{s}-{cache_key(store.path, ckpt_tag, dm.splits[s].tobytes())}.pt",
                    lambda s=s, e=encoder, n=normalizer: encode(e, n, modality, data[s][modality], device),
                )
                for s in data
            }
        arch = encoders.encoder_name if encoder is not None else "image-stats"
        if cfg.linear.enabled:
            for task in cfg.tasks:
                target = TASK_TARGET[task]
                for (fraction, seed), subset in subsets.items():
                    y_train = data["train"][target][subset]
                    best = None
                    for wd in cfg.linear.weight_decays:
                        probe = fit_linear(
                            feats["train"][subset], y_train, task == "multi-label", wd, cfg.linear.max_iter
                        )
                        val = classification_metrics(task, probe.logits(feats["val"]), data["val"][target], num_classes)
                        if best is None or val[PRIMARY_METRIC[task]] > best[0]:
                            best = (val[PRIMARY_METRIC[task]], probe)
                    probe = best[1]
                    test = classification_metrics(task, probe.logits(feats["test"]), data["test"][target], num_classes)
                    params = sum(p.numel() for p in probe.layer.parameters())
                    add(
                        init,
                        "linear",
                        task,
                        fraction,
                        seed,
                        test,
                        {
                            "num_labels": len(subset),
                            "trainable_params": params,
                            "wd": probe.weight_decay,
                            "encoder": arch,
                        },
                    )
            log(f"  linear probe  {init:<12} done in {time.perf_counter() - started:.0f}s")
        if cfg.finetune.enabled and encoder is not None:
            started = time.perf_counter()
            for task in cfg.finetune.tasks or cfg.tasks:
                target = TASK_TARGET[task]
                multilabel = task == "multi-label"
                for (fraction, seed), subset in subsets.items():
                    model = finetune(
                        encoder,
                        normalizer,
                        store.modalities[modality],
                        data["train"][modality][subset],
                        data["train"][target][subset],
                        multilabel,
                        num_classes,
                        cfg.finetune,
                        accelerator="auto" if cfg.accelerator == "auto" else cfg.accelerator,
                        seed=seed,
                    )
                    test = classification_metrics(
                        task, predict(model, data["test"][modality], device), data["test"][target], num_classes
                    )
                    params = sum(p.numel() for p in model.encoder.parameters()) + sum(
                        p.numel() for p in model.head.parameters()
                    )
                    add(
                        init,
                        "finetune",
                        task,
                        fraction,
                        seed,
                        test,
                        {"num_labels": len(subset), "trainable_params": params, "encoder": arch},
                    )
            log(f"  fine-tuning   {init:<12} done in {time.perf_counter() - started:.0f}s")
        _write_csv_atomic(pd.DataFrame(rows, columns=RESULT_COLUMNS), out / "results.csv")
    results = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    _write_csv_atomic(results, out / "results.csv")
    write_report(results, out, cfg)
    return results
