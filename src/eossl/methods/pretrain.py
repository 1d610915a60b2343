"""``eossl pretrain``: build the data module and method from a config, train, checkpoint, summarise.

Every method is built the same way (``METHODS[name](config, modalities, stats)``) and writes its own
``"eossl"`` checkpoint metadata; encoders are reloaded by :mod:`eossl.checkpoints`, whose loaders are
re-exported here (:func:`load_pretrained_encoder`, :func:`load_pretrained_encoders`,
:class:`PretrainedEncoder`). A ``resume`` checkpoint is read safely and checked before any training.
"""

from __future__ import annotations

import inspect
import resource
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import yaml
from lightning.pytorch.callbacks import LambdaCallback, TQDMProgressBar
from lightning.pytorch.strategies import DDPStrategy, Strategy

from eossl.checkpoints import (
    PretrainedEncoder,
    checkpoint_metadata,
    load_pretrained_encoder,
    load_pretrained_encoders,
    read_checkpoint,
)
from eossl.data.datamodule import EODataModule, StoreDataset
from eossl.data.modality import Modality
from eossl.data.splits import check_splits
from eossl.data.store import SampleStore, write_json_atomic
from eossl.errors import CheckpointError, ConfigError, EmbeddingCollapseError
from eossl.io import OutputLock, check_writable, write_text_atomic
from eossl.methods.base import check_multi_sensor
from eossl.methods.checkpointing import (
    LAST_CHECKPOINT,
    AppendingCSVLogger,
    AtomicCheckpointIO,
    PeriodicCheckpoint,
    StepSeed,
    checkpoint_bytes,
    last_logged_loss,
    launcher_rank,
    resume_checkpoint_path,
    resume_position,
    run_finished,
)
from eossl.methods.config import FSDP_NEEDS_CUDA, PretrainConfig, TrainerConfig
from eossl.methods.distributed import GatheredSyncBatchNorm
from eossl.methods.health import HealthMonitor, KnnData
from eossl.methods.registry import METHODS
from eossl.training import quiet_lightning, resolve_precision


def _knn_target(store: SampleStore) -> str | None:
    """The store's first declared single-label target (the online kNN's labels), or None."""
    single = store.targets_of_kind("single-label")
    return single[0].name if single else None


def _knn_data(dm: EODataModule, cfg: PretrainConfig, modality: str) -> KnnData | None:
    """Labelled bank (train) and queries (val) of ``modality`` for the online kNN, when the store declares
    a single-label target (the first one)."""
    target = _knn_target(dm.store)
    if target is None or len(dm.splits["val"]) == 0:
        return None
    rng = np.random.default_rng(cfg.seed)
    parts = {}
    for split, size in (("train", cfg.health.knn_bank_size), ("val", cfg.health.knn_query_size)):
        members = dm.splits[split]
        chosen = np.sort(rng.choice(members, size=min(size, len(members)), replace=False))
        parts[split] = StoreDataset(dm.store, chosen, [modality], [target], dm.arrays).__getitems__(
            list(range(len(chosen)))
        )
    train, val = parts["train"], parts["val"]
    return KnnData(train[modality], train[target], val[modality], val[target])


def pretrain_modalities(cfg: PretrainConfig, store: SampleStore) -> list[Modality]:
    """The store modalities a run trains on: ``data.modality``, or for cross-modal methods ``data.modalities``
    (anchor first), as for single-modality methods with a wavelength-conditioned encoder (multi-sensor
    pretraining: the sensors are trained on in turn, each needs ``wavelengths_nm``); a :class:`ConfigError`
    naming the key otherwise."""
    method = cfg.method.name
    cross_modal = [n for n, m in METHODS.items() if m.config.cross_modal]
    if METHODS[method].config.cross_modal:
        key, names = "data.modalities", cfg.data.modalities or []
        if len(names) < 2 or len(set(names)) != len(names):
            raise ConfigError(
                f"'data.modalities': method '{method}' pairs co-registered modalities, so it needs at least 2 distinct "
                f"ones of the store (it has: {', '.join(store.modalities)}), e.g. [s2, s1]; got {cfg.data.modalities}"
            )
    elif cfg.data.modalities is not None:  # multi-sensor pretraining (checked below)
        key, names = "data.modalities", cfg.data.modalities
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"'data.modalities': multi-sensor pretraining needs distinct modalities, got {names}")
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
    modalities = [store.modalities[n] for n in names]
    if key == "data.modalities" and not METHODS[method].config.cross_modal:
        check_multi_sensor(method, cfg.encoder.name, modalities, cross_modal)
    return modalities


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


def _check_resume(path: Path, method: str, modalities: list[Modality]) -> dict[str, Any]:
    """The ``resume`` checkpoint, read safely; refused before any training when it is missing, damaged,
    unsafe (it would run code when loaded), not an eossl pretraining checkpoint, of another method, or of
    modalities with other bands than the store's."""
    try:
        checkpoint = read_checkpoint(path)  # weights_only=True: nothing in the file runs
        meta, _ = checkpoint_metadata(path, checkpoint)
    except CheckpointError as exc:
        raise CheckpointError(f"'resume': {exc}") from None
    if meta["method"] != method:
        raise CheckpointError(
            f"'resume': checkpoint '{path}' was written by method '{meta['method']}'; this run trains '{method}'"
        )
    saved = {m["name"]: list(m.get("bands", [])) for m in meta["modalities"]}
    for modality in modalities:
        bands = saved.get(modality.name)
        if bands is None:
            raise CheckpointError(
                f"'resume': checkpoint '{path}' has no modality '{modality.name}' (it has: {', '.join(saved)})"
            )
        if bands != list(modality.bands):
            raise CheckpointError(
                f"'resume': checkpoint '{path}' trained '{modality.name}' on {len(bands)} bands ({', '.join(bands)}); "
                f"the store's '{modality.name}' has {modality.num_bands} ({', '.join(modality.bands)})"
            )
    if "loops" not in checkpoint:
        raise CheckpointError(f"'resume': '{path}' holds no training state (an exported or trimmed checkpoint)")
    return checkpoint


def _on_cuda(trainer: TrainerConfig) -> bool:
    """Whether the run will train on CUDA GPUs (as ``accelerator`` and this machine decide)."""
    return trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def _check_strategy(trainer: TrainerConfig) -> None:
    """Refuse, before any work, a strategy the machine cannot run (FSDP without CUDA GPUs)."""
    if trainer.strategy == "fsdp" and not _on_cuda(trainer):
        raise ConfigError(f"'trainer.strategy': {FSDP_NEEDS_CUDA} (no CUDA GPU here)")


def _plugins(trainer: TrainerConfig) -> dict[str, Any]:
    """Trainer arguments: checkpoints written atomically, and for ``trainer.sync_batchnorm`` Lightning's
    (torch's ``SyncBatchNorm``) on CUDA, :class:`~eossl.methods.distributed.GatheredSyncBatchNorm`
    elsewhere (torch's is GPU only)."""
    plugins: list[Any] = [AtomicCheckpointIO()]
    if not trainer.sync_batchnorm:
        return {"plugins": plugins}
    if _on_cuda(trainer):
        return {"sync_batchnorm": True, "plugins": plugins}
    return {"plugins": [*plugins, GatheredSyncBatchNorm()]}


def _world_size(trainer: TrainerConfig) -> int:
    """Processes of the run as configured (``auto`` devices: one per GPU on CUDA, one on CPU)."""
    devices = trainer.devices
    if devices == "auto":
        devices = torch.cuda.device_count() if _on_cuda(trainer) else 1
    return int(devices) * trainer.num_nodes


def _agree_to_stop(trainer: L.Trainer, *_: object) -> None:
    """Stop every process when one asks to (the health monitor judges its own process's batch): a process
    that stopped alone would leave the others waiting in the next collective."""
    if trainer.world_size > 1:
        trainer.should_stop = trainer.strategy.reduce_boolean_decision(trainer.should_stop, all=False)


def _strategy(cfg: PretrainConfig) -> str | Strategy:
    """``trainer.strategy`` for Lightning; DDP looks for unused parameters where the method has some in
    some steps (its class attribute ``ddp_find_unused_parameters``, e.g. SwAV's frozen prototypes)."""
    name = cfg.trainer.strategy
    if name in ("ddp", "ddp_spawn") and METHODS[cfg.method.name].ddp_find_unused_parameters:
        return DDPStrategy(find_unused_parameters=True, start_method="spawn" if name == "ddp_spawn" else "popen")
    return name


def run_pretrain(cfg: PretrainConfig) -> Path:
    """Train ``cfg.method`` on the store's training split; return the path of the last checkpoint.

    Raises :class:`EmbeddingCollapseError` (after writing the checkpoint and summary) when the health
    monitor stopped the run because the embedding stayed collapsed.

    With several processes (``trainer.devices`` x ``trainer.num_nodes``, ``docs/distributed.md``) every
    process runs this function; only global rank 0 writes ``config.yaml``, the checkpoint and
    ``summary.json``, and every rank returns the checkpoint's path.
    """
    _check_strategy(cfg.trainer)
    check_writable(cfg.out, create=False)  # before any work: a folder that cannot be written fails now
    with ExitStack() as held:
        # rank 0 holds the folder's lock for every process of the run, from its first write on
        lock = OutputLock(cfg.out, "eossl pretrain")
        claim = (lambda: held.enter_context(lock)) if launcher_rank() == 0 else (lambda: None)
        return _run_pretrain(cfg, claim)


def _run_pretrain(cfg: PretrainConfig, claim_out: Callable[[], object]) -> Path:
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
    group = store.dates.group if store.dates is not None else None
    check_splits(dm.splits, store.table, str(store.path), ("train",), val=cfg.data.val, test=cfg.data.test,
                 group=group, official=store.split, purpose="pretraining")  # fmt: skip
    modality = modalities[0]  # the anchor of cross-modal methods: health, online kNN, default export
    sizes = {m.name: tuple(store.array(m.name).shape[-2:]) for m in modalities}
    if len(set(sizes.values())) > 1:
        raise ConfigError(f"'data.modalities': co-registered modalities need patches of one size, got {sizes}")
    cfg = cfg.model_copy(update={"encoder": cfg.encoder.with_img_size(sizes[modality.name][-1])})
    out = Path(cfg.out)
    resume = resume_checkpoint_path(cfg.resume, Path(cfg.out))
    resumed = _check_resume(resume, cfg.method.name, modalities) if resume is not None else None
    last = out / "checkpoints" / LAST_CHECKPOINT
    if (
        resumed is not None
        and run_finished(resumed, cfg.trainer.max_steps, cfg.trainer.max_epochs)
        and (out / "summary.json").is_file()
    ):
        print(f"the run in '{out}' is complete (step {resumed['global_step']}); nothing to train")
        return last
    stats = {m.name: store.stats[m.name] for m in modalities}
    model = METHODS[cfg.method.name](cfg.model_dump(mode="json"), [asdict(m) for m in modalities], stats)
    claim_out()
    check_writable(out / "checkpoints", 2 * checkpoint_bytes(model), key="out")  # the old one and the new one
    if resumed is not None:
        dm.distributed = _world_size(cfg.trainer) > 1
        dm.resume_at = resume_position(resumed, len(dm.train_dataloader()))
    checkpoint = PeriodicCheckpoint(
        out / "checkpoints", cfg.trainer.checkpoint_every_n_steps, cfg.trainer.checkpoint_every_minutes
    )
    health = HealthMonitor(cfg.health.model_dump(), _knn_data(dm, cfg, modality.name))
    progress = [TQDMProgressBar(refresh_rate=10)] if cfg.trainer.progress_bar else []
    first_step = {"step": 0}  # where training starts: above 0 when resuming
    on_start = LambdaCallback(on_train_start=lambda trainer, _: first_step.update(step=trainer.global_step))
    trainer = L.Trainer(
        default_root_dir=out,
        max_epochs=cfg.trainer.max_epochs,
        max_steps=cfg.trainer.max_steps,
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        num_nodes=cfg.trainer.num_nodes,
        strategy=_strategy(cfg),
        **_plugins(cfg.trainer),
        precision=resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator),
        logger=AppendingCSVLogger(out, "logs", from_step=int(resumed["global_step"]) if resumed else 0),
        # the checkpoint last: after the health monitor's end-of-batch work (see PeriodicCheckpoint)
        callbacks=[
            StepSeed(cfg.seed),
            health,
            LambdaCallback(on_train_batch_end=_agree_to_stop),
            on_start,
            *progress,
            checkpoint,
        ],
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        enable_progress_bar=cfg.trainer.progress_bar,
        enable_model_summary=False,
        enable_checkpointing=False,  # PeriodicCheckpoint writes OUT/checkpoints/last.ckpt
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    if trainer.is_global_zero:
        write_text_atomic(out / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    if trainer.world_size > 1:
        # Lightning shards the training rows over processes with a DistributedSampler, which it can only
        # put in place of a plain sampler, not in place of the chunk-shuffling batch sampler
        dm.shuffle, dm.distributed = "full", True
        # the model was built from one seed on every process (DDP also copies rank 0's weights); the
        # augmentations must differ between processes, or sample i of every rank gets the same crop
        torch.manual_seed(cfg.seed + trainer.global_rank)
    start = time.perf_counter()
    rss_before, reset = _proc_status_mb("VmRSS"), _reset_peak_rss()
    safe = {"weights_only": True} if "weights_only" in inspect.signature(trainer.fit).parameters else {}
    trainer.fit(model, datamodule=dm, ckpt_path=resume, **safe)
    seconds = time.perf_counter() - start
    global_batch = cfg.data.batch_size * trainer.world_size
    samples = (trainer.global_step - first_step["step"]) * global_batch
    if not trainer.is_global_zero:  # rank 0 writes the checkpoint and the summary (maybe on another node)
        if health.stop_reason:
            raise EmbeddingCollapseError(f"pretraining stopped: {health.stop_reason}")
        return last
    if not last.is_file():
        raise ConfigError(
            f"pretraining ran no step (trainer.max_steps={cfg.trainer.max_steps}, "
            f"max_epochs={cfg.trainer.max_epochs}, {len(dm.splits['train'])} training samples), "
            f"so no checkpoint was written to '{last}'"
        )
    filled = {name: count for n in model.normalizers.values() for name, count in n.filled.items()}
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
        "final_loss": float(trainer.callback_metrics.get("train/loss", last_logged_loss(out))),
        "health": health.summary(),
        "filled_nonfinite_values": filled,
        "device": str(model.device),
        "world_size": trainer.world_size,  # processes; samples_per_second counts all of them
        "global_batch_size": global_batch,
        "precision": str(trainer.precision),
        "checkpoint": str(last),
        "checkpoints_written_at_steps": checkpoint.saved_steps,
        "sessions": checkpoint.sessions,
    }
    write_json_atomic(out / "summary.json", summary)
    if any(filled.values()):
        print(f"warning: filled {filled} non-finite input values with band means (see summary.json)")
    if health.stop_reason:
        raise EmbeddingCollapseError(f"pretraining stopped: {health.stop_reason} (details in {out / 'summary.json'})")
    return last


__all__ = [
    "PretrainedEncoder",
    "load_pretrained_encoder",
    "load_pretrained_encoders",
    "pretrain_modalities",
    "run_pretrain",
]
