"""``eossl pretrain``: build the data module and method from a config, train, checkpoint, summarise."""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import LambdaCallback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from eossl.config import ConfigError, PretrainConfig, dump_config
from eossl.data.datamodule import EODataModule, StoreDataset
from eossl.data.normalize import BandNormalizer
from eossl.data.store import write_json_atomic
from eossl.errors import EmbeddingCollapseError
from eossl.methods import method_class
from eossl.methods.health import HealthMonitor, KnnData
from eossl.methods.hparams import METHOD_CONFIGS
from eossl.models.encoders import encoder_from_config
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


def _proc_status_mb(field: str) -> float | None:
    """``VmRSS``/``VmHWM`` of this process from /proc (Linux), in MiB; None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS counter (Linux), so the peak covers training only."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _memory_mb(device: torch.device, rss_before: float | None, reset: bool) -> dict[str, float | None]:
    """Resident memory before training and its peak during training (process lifetime peak where the
    counter cannot be reset); peak CUDA memory on GPUs."""
    peak = _proc_status_mb("VmHWM") if reset else None
    if peak is None:  # not Linux: ru_maxrss is the process-lifetime peak (KiB on Linux, bytes on macOS)
        scale = 2**20 if sys.platform == "darwin" else 2**10
        peak = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale, 1)
    memory = {"rss_before_training_mb": rss_before, "peak_rss_mb": peak}
    if device.type == "cuda":
        memory["peak_cuda_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return memory


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
    cfg = cfg.model_copy(update={"encoder": cfg.encoder.with_img_size(dm.arrays[modality.name].shape[-1])})
    if cfg.resume is not None and not Path(cfg.resume).exists():
        raise ConfigError(f"'resume': checkpoint '{cfg.resume}' does not exist")
    model = method_class(cfg.method.name)(cfg.model_dump(mode="json"), asdict(modality), dm.store.stats[modality.name])
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    checkpoint = ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, save_top_k=0)
    health = HealthMonitor(cfg.health.model_dump(), _knn_data(dm, cfg))
    progress = [TQDMProgressBar(refresh_rate=10)] if cfg.trainer.progress_bar else []
    first_step = {"step": 0}  # where training starts: above 0 when resuming
    on_start = LambdaCallback(on_train_start=lambda trainer, _: first_step.update(step=trainer.global_step))
    trainer = L.Trainer(
        default_root_dir=out,
        max_epochs=cfg.trainer.max_epochs,
        max_steps=cfg.trainer.max_steps,
        accelerator=cfg.trainer.accelerator,
        precision=resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator),
        logger=CSVLogger(out, name="logs", version=""),
        callbacks=[checkpoint, health, on_start, *progress],
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        enable_progress_bar=cfg.trainer.progress_bar,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    rss_before, reset = _proc_status_mb("VmRSS"), _reset_peak_rss()
    trainer.fit(model, datamodule=dm, ckpt_path=cfg.resume)
    seconds = time.perf_counter() - start
    samples = (trainer.global_step - first_step["step"]) * cfg.data.batch_size
    summary = {
        "method": cfg.method.name,
        "encoder": cfg.encoder.name,
        "modality": modality.name,
        "steps": trainer.global_step,
        "epochs": trainer.current_epoch,
        "seconds": round(seconds, 1),
        # training throughput: the time spent in health monitoring (online kNN etc.) is left out
        "samples_per_second": round(samples / max(seconds - health.seconds, 1e-9), 1),
        **_memory_mb(model.device, rss_before, reset),
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
