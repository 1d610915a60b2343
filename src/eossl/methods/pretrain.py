"""``eossl pretrain``: build the data module and method from a config, train, checkpoint, summarise."""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import LambdaCallback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from eossl.config import ConfigError, PretrainConfig, dump_config
from eossl.data.datamodule import EODataModule, StoreDataset
from eossl.data.modality import Modality
from eossl.data.normalize import BandNormalizer
from eossl.data.store import SampleStore, write_json_atomic
from eossl.errors import EmbeddingCollapseError
from eossl.methods import method_class
from eossl.methods.health import HealthMonitor, KnnData
from eossl.methods.hparams import METHOD_CONFIGS
from eossl.models.encoders import encoder_from_config
from eossl.training import quiet_lightning, resolve_precision


def _knn_data(dm: EODataModule, cfg: PretrainConfig, modality: str) -> KnnData | None:
    """Labelled bank (train) and queries (val) of ``modality`` for the online kNN, when the store has labels."""
    if "label" not in dm.store.table.columns or len(dm.splits["val"]) == 0:
        return None
    rng = np.random.default_rng(cfg.seed)
    parts = {}
    for split, size in (("train", cfg.health.knn_bank_size), ("val", cfg.health.knn_query_size)):
        members = dm.splits[split]
        chosen = np.sort(rng.choice(members, size=min(size, len(members)), replace=False))
        parts[split] = StoreDataset(dm.store, chosen, [modality], ["label"], dm.arrays).__getitems__(
            list(range(len(chosen)))
        )
    train, val = parts["train"], parts["val"]
    return KnnData(train[modality], train["label"], val[modality], val["label"])


def pretrain_modalities(cfg: PretrainConfig, store: SampleStore) -> list[Modality]:
    """The store modalities a run trains on: ``data.modality``, or for cross-modal methods
    ``data.modalities`` (anchor first); a :class:`ConfigError` naming the key otherwise."""
    method = cfg.method.name
    cross_modal = sorted(n for n, c in METHOD_CONFIGS.items() if c.cross_modal)
    if METHOD_CONFIGS[method].cross_modal:
        key, names = "data.modalities", cfg.data.modalities or []
        if len(names) < 2 or len(set(names)) != len(names):
            raise ConfigError(
                f"'data.modalities': method '{method}' pairs co-registered modalities, so it needs at least 2 distinct "
                f"ones of the store (it has: {', '.join(store.modalities)}), e.g. [s2, s1]; got {cfg.data.modalities}"
            )
    elif cfg.data.modalities is not None:
        raise ConfigError(
            f"'data.modalities': method '{method}' trains on one modality, set by 'data.modality'; "
            f"data.modalities is for the cross-modal methods ({', '.join(cross_modal)})"
        )
    else:
        key, names = "data.modality", [cfg.data.modality]
    for name in names:
        if name not in store.modalities:
            raise ConfigError(
                f"'{key}': store '{store.path}' has no modality '{name}' (it has: {', '.join(store.modalities)})"
            )
        modality = store.modalities[name]
        if not modality.continuous:
            raise ConfigError(f"'{key}': '{name}' is {modality.kind}; pretraining needs image bands")
    return [store.modalities[n] for n in names]


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
    store = SampleStore(cfg.data.store)
    modalities = pretrain_modalities(cfg, store)
    dm = EODataModule(
        store,
        [m.name for m in modalities],
        targets=[],
        batch_size=cfg.data.batch_size,
        num_workers=cfg.data.num_workers,
        val=cfg.data.val,
        test=cfg.data.test,
        split_seed=cfg.data.split_seed,
        in_memory=cfg.data.in_memory,
        dates=cfg.method.dates,  # temporal pairing: each sample brings other dates of its place
        seed=cfg.seed,
    )
    modality = modalities[0]  # the anchor of cross-modal methods: health, online kNN, default export
    sizes = {m.name: tuple(store.array(m.name).shape[-2:]) for m in modalities}
    if len(set(sizes.values())) > 1:
        raise ConfigError(f"'data.modalities': co-registered modalities need patches of one size, got {sizes}")
    cfg = cfg.model_copy(update={"encoder": cfg.encoder.with_img_size(sizes[modality.name][-1])})
    if cfg.resume is not None and not Path(cfg.resume).exists():
        raise ConfigError(f"'resume': checkpoint '{cfg.resume}' does not exist")
    if METHOD_CONFIGS[cfg.method.name].cross_modal:
        stats = {m.name: store.stats[m.name] for m in modalities}
        model = method_class(cfg.method.name)(cfg.model_dump(mode="json"), [asdict(m) for m in modalities], stats)
    else:
        model = method_class(cfg.method.name)(cfg.model_dump(mode="json"), asdict(modality), store.stats[modality.name])
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    checkpoint = ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, save_top_k=0)
    health = HealthMonitor(cfg.health.model_dump(), _knn_data(dm, cfg, modality.name))
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
    normalizers = getattr(model, "normalizers", {modality.name: model.normalizer})
    filled = {name: count for n in normalizers.values() for name, count in n.filled.items()}
    summary = {
        "method": cfg.method.name,
        "encoder": cfg.encoder.name,
        "modality": modality.name,
        "modalities": [m.name for m in modalities],
        "steps": trainer.global_step,
        "epochs": trainer.current_epoch,
        "seconds": round(seconds, 1),
        # training throughput: the time spent in health monitoring (online kNN etc.) is left out
        "samples_per_second": round(samples / max(seconds - health.seconds, 1e-9), 1),
        **_memory_mb(model.device, rss_before, reset),
        "final_loss": float(trainer.callback_metrics.get("train/loss", float("nan"))),
        "health": health.summary(),
        "filled_nonfinite_values": filled,
        "device": str(model.device),
        "precision": str(trainer.precision),
        "checkpoint": str(out / "checkpoints" / "last.ckpt"),
    }
    write_json_atomic(out / "summary.json", summary)
    if any(filled.values()):
        print(f"warning: filled {filled} non-finite input values with band means (see summary.json)")
    if health.stop_reason:
        raise EmbeddingCollapseError(f"pretraining stopped: {health.stop_reason} (details in {out / 'summary.json'})")
    return out / "checkpoints" / "last.ckpt"


@dataclass
class PretrainedEncoder:
    """An encoder rebuilt from a pretraining checkpoint, with what is needed to feed it.

    ``modality`` names its input (a store modality, or ``"s2+s1"`` for the stacked input of a stem-fused
    encoder); ``modalities`` are the store modalities that input stacks, in order.
    """

    encoder: torch.nn.Module
    normalizer: BandNormalizer
    modality: str
    method: str
    encoder_config: dict
    modalities: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.modalities = self.modalities or self.modality.split("+")

    @property
    def encoder_name(self) -> str:
        return self.encoder_config["name"]


def _hyperparameters(path: Path) -> tuple[dict, dict]:
    """The checkpoint's saved constructor arguments (config, modality or modalities, stats) and state dict."""
    if not path.exists():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    hp = ckpt.get("hyper_parameters", {})
    needed = ["config", "modalities" if "modalities" in hp else "modality", "stats"]
    missing = [k for k in needed if k not in hp] + [k for k in ["state_dict"] if k not in ckpt]
    if missing:
        raise ValueError(f"checkpoint '{path}' was not written by eossl pretrain (missing {', '.join(missing)})")
    return hp, ckpt["state_dict"]


def _cross_modal_encoders(hp: dict, state: dict) -> dict[str, PretrainedEncoder]:
    cfg, stats = hp["config"], hp["stats"]
    method = cfg["method"]["name"]
    cfg = {**cfg, "encoder": {**cfg["encoder"], "weights_file": None}}  # every weight is in the checkpoint
    model = method_class(method)(cfg, hp["modalities"], stats)
    model.load_state_dict(state)
    out = {}
    for name, encoder in model.modality_encoders().items():
        parts = name.split("+")
        joined = {k: [v for p in parts for v in stats[p][k]] for k in ("mean", "std")}
        normalizer = BandNormalizer({name: joined}, [name])
        out[name] = PretrainedEncoder(encoder.eval(), normalizer, name, method, dict(cfg["encoder"]), parts)
    return out


def load_pretrained_encoders(checkpoint: str | Path) -> dict[str, PretrainedEncoder]:
    """Every encoder of a pretraining checkpoint, by the input it takes, with its input normalisation.

    Single-modality methods: ``{modality: encoder}`` (for DINO the teacher). Cross-modal methods: one
    ordinary encoder per modality, anchor first (``encoders: shared``: the shared trunk with that
    modality's stem); with shared encoders also the stem-fused encoder under ``"s2+s1"`` (the modalities
    joined by ``+``), fed the stacked modalities normalised with their concatenated statistics.
    """
    path = Path(checkpoint)
    hp, state = _hyperparameters(path)
    if "modalities" in hp:
        return _cross_modal_encoders(hp, state)
    cfg, modality, stats = hp["config"], hp["modality"], hp["stats"]
    method = cfg["method"]["name"]
    prefix = METHOD_CONFIGS[method].export + "." if method in METHOD_CONFIGS else "encoder."
    encoder = encoder_from_config(cfg["encoder"], len(modality["bands"]))
    encoder.load_state_dict({k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)})
    normalizer = BandNormalizer({modality["name"]: stats}, [modality["name"]])
    pretrained = PretrainedEncoder(encoder.eval(), normalizer, modality["name"], method, dict(cfg["encoder"]))
    return {modality["name"]: pretrained}


def load_pretrained_encoder(checkpoint: str | Path, modality: str | None = None) -> PretrainedEncoder:
    """Rebuild one encoder (for DINO: the teacher) and its input normalisation from a pretraining checkpoint.

    ``modality``: which input, for cross-modal checkpoints (see :func:`load_pretrained_encoders`); None
    gives the checkpoint's modality, or the anchor (the first of ``data.modalities``).
    """
    encoders = load_pretrained_encoders(checkpoint)
    if modality is None:
        return next(iter(encoders.values()))
    if modality not in encoders:
        raise KeyError(f"checkpoint '{checkpoint}' has no encoder for '{modality}' (it has: {', '.join(encoders)})")
    return encoders[modality]
