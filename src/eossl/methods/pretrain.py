"""``eossl pretrain``: build the data module and method from a config, train, checkpoint, summarise."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from eossl.config import ConfigError, PretrainConfig, dump_config
from eossl.data.datamodule import EODataModule
from eossl.data.normalize import BandNormalizer
from eossl.data.store import write_json_atomic
from eossl.methods import METHODS
from eossl.models.encoders import build_encoder
from eossl.training import quiet_lightning, resolve_precision


def run_pretrain(cfg: PretrainConfig) -> Path:
    """Train ``cfg.method`` on the store's training split; return the path of the last checkpoint."""
    if cfg.method.name not in METHODS:
        raise ConfigError(f"'method.name': unknown method '{cfg.method.name}' (available: {', '.join(METHODS)})")
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
    model = METHODS[cfg.method.name](cfg.model_dump(mode="json"), asdict(modality), dm.store.stats[modality.name])
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    checkpoint = ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, save_top_k=0)
    trainer = L.Trainer(
        default_root_dir=out,
        max_epochs=cfg.trainer.max_epochs,
        max_steps=cfg.trainer.max_steps,
        accelerator=cfg.trainer.accelerator,
        precision=resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator),
        logger=CSVLogger(out, name="logs", version=""),
        callbacks=[checkpoint, *([TQDMProgressBar(refresh_rate=10)] if cfg.trainer.progress_bar else [])],
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        enable_progress_bar=cfg.trainer.progress_bar,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    seconds = time.perf_counter() - start
    samples = trainer.global_step * cfg.data.batch_size
    summary = {
        "method": cfg.method.name,
        "encoder": cfg.encoder.name,
        "modality": modality.name,
        "steps": trainer.global_step,
        "epochs": trainer.current_epoch,
        "seconds": round(seconds, 1),
        "samples_per_second": round(samples / max(seconds, 1e-9), 1),
        "final_loss": float(trainer.callback_metrics.get("train/loss", float("nan"))),
        "filled_nonfinite_values": model.normalizer.filled,
        "device": str(model.device),
        "precision": str(trainer.precision),
        "checkpoint": str(out / "checkpoints" / "last.ckpt"),
    }
    write_json_atomic(out / "summary.json", summary)
    if any(model.normalizer.filled.values()):
        print(f"warning: filled {model.normalizer.filled} non-finite input values with band means (see summary.json)")
    return out / "checkpoints" / "last.ckpt"


@dataclass
class PretrainedEncoder:
    """An encoder rebuilt from a pretraining checkpoint, with what is needed to feed it."""

    encoder: torch.nn.Module
    normalizer: BandNormalizer
    modality: str
    method: str
    encoder_name: str
    stem: str
    output_stride: int


def load_pretrained_encoder(checkpoint: str | Path) -> PretrainedEncoder:
    """Rebuild the encoder and its input normalisation from a pretraining checkpoint."""
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    try:
        hp = ckpt["hyper_parameters"]
        cfg, modality, stats = hp["config"], hp["modality"], hp["stats"]
    except KeyError as exc:
        raise ValueError(f"checkpoint '{path}' was not written by eossl pretrain (missing {exc})") from None
    enc = cfg["encoder"]
    encoder = build_encoder(enc["name"], len(modality["bands"]), enc["stem"], enc.get("output_stride", 32))
    state = ckpt["state_dict"]
    encoder.load_state_dict({k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")})
    normalizer = BandNormalizer({modality["name"]: stats}, [modality["name"]])
    return PretrainedEncoder(
        encoder,
        normalizer,
        modality["name"],
        cfg["method"]["name"],
        enc["name"],
        enc["stem"],
        enc.get("output_stride", 32),
    )
