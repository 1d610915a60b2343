"""``eossl pretrain``: build the data module and method from a config, train, checkpoint, summarise."""

from __future__ import annotations

import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from eossl.config import ConfigError, PretrainConfig, dump_config
from eossl.data.datamodule import EODataModule, StoreDataset
from eossl.data.normalize import BandNormalizer
from eossl.data.store import write_json_atomic
from eossl.errors import EmbeddingCollapseError
from eossl.methods import method_class
from eossl.methods.health import HealthMonitor, KnnData
from eossl.methods.hparams import METHOD_CONFIGS
from eossl.models.encoders import encoder_from_config, is_vision_transformer
from eossl.training import quiet_lightning, resolve_precision


def _knn_data(dm: EODataModule, cfg: PretrainConfig) -> KnnData | None:
    """Labelled bank (train) and queries (val) for the online kNN, when the store has labels."""
    if "label" not in dm.store.table.columns or len(dm.splits["val"]) == 0:
        return None
    rng = np.random.default_rng(cfg.seed)
    parts = {}
    for split, size in (("train", cfg.health.knn_bank_size), ("val", cfg.health.knn_query_size)):
        members = dm.splits[split]
        chosen = np.sort(rng.choice(members, size=min(size, len(members)), replace=False))
        parts[split] = StoreDataset(dm.store, chosen, [cfg.data.modality], ["label"], dm.arrays).__getitems__(
            list(range(len(chosen)))
        )
    m = cfg.data.modality
    return KnnData(parts["train"][m], parts["train"]["label"], parts["val"][m], parts["val"]["label"])


def _peak_memory_mb(device: torch.device) -> dict[str, float]:
    peak = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.type == "cuda":
        peak["peak_cuda_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return peak


def run_pretrain(cfg: PretrainConfig) -> Path:
    """Train ``cfg.method`` on the store's training split; return the path of the last checkpoint.

    Raises :class:`EmbeddingCollapseError` (after writing the checkpoint and summary) when the health
    monitor stopped the run because the embedding stayed collapsed.
    """
    quiet_lightning()
    L.seed_everything(cfg.seed, verbose=False)
    dm = EODataModule(
        cfg.data.store,
        [cfg.data.modality],
        targets=[],
        batch_size=cfg.data.batch_size,
        num_workers=cfg.data.num_workers,
        val=cfg.data.val,
        test=cfg.data.test,
        split_seed=cfg.data.split_seed,
        in_memory=cfg.data.in_memory,
    )
    modality = dm.store.modalities[cfg.data.modality]
    if not modality.continuous:
        raise ConfigError(f"'data.modality': '{modality.name}' is {modality.kind}; pretraining needs image bands")
    if cfg.encoder.img_size is None and is_vision_transformer(cfg.encoder.name):
        encoder = cfg.encoder.model_copy(update={"img_size": dm.arrays[modality.name].shape[-1]})
        cfg = cfg.model_copy(update={"encoder": encoder})
    if cfg.resume is not None and not Path(cfg.resume).exists():
        raise ConfigError(f"'resume': checkpoint '{cfg.resume}' does not exist")
    model = method_class(cfg.method.name)(cfg.model_dump(mode="json"), asdict(modality), dm.store.stats[modality.name])
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    checkpoint = ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, save_top_k=0)
    health = HealthMonitor(cfg.health.model_dump(), _knn_data(dm, cfg))
    trainer = L.Trainer(
        default_root_dir=out,
        max_epochs=cfg.trainer.max_epochs,
        max_steps=cfg.trainer.max_steps,
        accelerator=cfg.trainer.accelerator,
        precision=resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator),
        logger=CSVLogger(out, name="logs", version=""),
        callbacks=[checkpoint, health, *([TQDMProgressBar(refresh_rate=10)] if cfg.trainer.progress_bar else [])],
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        enable_progress_bar=cfg.trainer.progress_bar,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    start_step = 0
    if cfg.resume is not None:
        start_step = int(torch.load(cfg.resume, map_location="cpu", weights_only=False).get("global_step", 0))
    trainer.fit(model, datamodule=dm, ckpt_path=cfg.resume)
    seconds = time.perf_counter() - start
    samples = (trainer.global_step - start_step) * cfg.data.batch_size
    summary = {
        "method": cfg.method.name,
        "encoder": cfg.encoder.name,
        "modality": modality.name,
        "steps": trainer.global_step,
        "epochs": trainer.current_epoch,
        "seconds": round(seconds, 1),
        "samples_per_second": round(samples / max(seconds, 1e-9), 1),
        **_peak_memory_mb(model.device),
        "final_loss": float(trainer.callback_metrics.get("train/loss", float("nan"))),
        "health": health.summary(),
        "filled_nonfinite_values": model.normalizer.filled,
        "device": str(model.device),
        "precision": str(trainer.precision),
        "checkpoint": str(out / "checkpoints" / "last.ckpt"),
    }
    write_json_atomic(out / "summary.json", summary)
    if any(model.normalizer.filled.values()):
        print(f"warning: filled {model.normalizer.filled} non-finite input values with band means (see summary.json)")
    if health.stop_reason:
        raise EmbeddingCollapseError(f"pretraining stopped: {health.stop_reason} (details in {out / 'summary.json'})")
    return out / "checkpoints" / "last.ckpt"


@dataclass
class PretrainedEncoder:
    """An encoder rebuilt from a pretraining checkpoint, with what is needed to feed it."""

    encoder: torch.nn.Module
    normalizer: BandNormalizer
    modality: str
    method: str
    encoder_config: dict

    @property
    def encoder_name(self) -> str:
        return self.encoder_config["name"]


def load_pretrained_encoder(checkpoint: str | Path) -> PretrainedEncoder:
    """Rebuild the encoder (for DINO: the teacher) and its input normalisation from a pretraining checkpoint."""
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    try:
        hp = ckpt["hyper_parameters"]
        cfg, modality, stats = hp["config"], hp["modality"], hp["stats"]
    except KeyError as exc:
        raise ValueError(f"checkpoint '{path}' was not written by eossl pretrain (missing {exc})") from None
    method = cfg["method"]["name"]
    prefix = METHOD_CONFIGS[method].export + "." if method in METHOD_CONFIGS else "encoder."
    encoder = encoder_from_config(cfg["encoder"], len(modality["bands"]))
    state = {k.removeprefix(prefix): v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    encoder.load_state_dict(state)
    normalizer = BandNormalizer({modality["name"]: stats}, [modality["name"]])
    return PretrainedEncoder(encoder.eval(), normalizer, modality["name"], method, dict(cfg["encoder"]))
