"""Crash-safe pretraining: atomic periodic checkpoints, ``resume: auto``, logs kept on resume, and a
step-seeded random stream, so a run killed at any moment continues where its last checkpoint was and
ends where an uninterrupted run ends.

- :class:`AtomicCheckpointIO`: Lightning writes every checkpoint through it: to a temporary file
  beside the target, flushed to disk, then renamed over it. A crash or a full disk leaves the previous
  checkpoint, never a cut-off file at the final path.
- :class:`PeriodicCheckpoint`: ``CHECKPOINTS/last.ckpt`` every ``trainer.checkpoint_every_n_steps``
  steps and/or ``trainer.checkpoint_every_minutes`` minutes (default 10: only runs longer than that
  pay for it), and when training ends.
- :class:`StepSeed`: before every training step, torch's, numpy's and Python's generators are seeded
  from ``(seed, process rank, global step)``, so a step's augmentations do not depend on how many steps
  this process has run (a resumed run draws what an uninterrupted one draws at that step).
- :func:`resume_position`: where in its epoch a checkpoint was written, so the data module skips the
  batches already trained on (:attr:`eossl.data.datamodule.EODataModule.resume_at`).
- :class:`AppendingCSVLogger`: Lightning's CSV logger deletes ``metrics.csv`` when its folder is not
  empty; this one keeps the rows logged before the resumed step and appends to them.
"""

from __future__ import annotations

import csv
import os
import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.loggers.csv_logs import _ExperimentWriter
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from eossl.io import OutputFolderError, temporary_sibling

LAST_CHECKPOINT = "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temporary file beside the target, ``fsync``, then rename over the target."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_sibling(path)
        try:
            with open(tmp, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            tmp.replace(path)
        except OSError as exc:
            raise OutputFolderError(
                f"writing checkpoint '{path}' failed ({exc.strerror or exc}); the previous checkpoint there is kept"
            ) from None
        finally:
            tmp.unlink(missing_ok=True)
        try:  # make the rename itself durable
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass


class PeriodicCheckpoint(Callback):
    """Write ``folder/last.ckpt`` every ``every_n_steps`` steps and/or ``every_minutes`` minutes of training
    (0 turns either off) and at the end of training. Every process takes part in the save (the strategy
    writes on rank 0); the time rule is agreed between processes."""

    def __init__(self, folder: Path, every_n_steps: int = 0, every_minutes: float = 0.0) -> None:
        self.path = Path(folder) / LAST_CHECKPOINT
        self.every_n_steps, self.every_seconds = every_n_steps, every_minutes * 60
        self._last_save = self._started = time.monotonic()
        self.saved_steps: list[int] = []
        self.sessions: list[dict[str, Any]] = []  # one per start of the run: from_step, to_step, seconds

    def state_dict(self) -> dict[str, Any]:
        return {"sessions": [dict(s) for s in self.sessions]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sessions = [dict(s) for s in state.get("sessions", [])]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_save = self._started = time.monotonic()
        step = trainer.global_step
        self.sessions = [s for s in self.sessions if s["from_step"] < step]
        self.sessions.append({"from_step": step, "to_step": step, "seconds": 0.0})
        if trainer.is_global_zero:  # what a write cut off by a crash left (the folder's lock keeps others out)
            for stale in self.path.parent.glob(f".{self.path.name}.tmp-*"):
                stale.unlink(missing_ok=True)

    def _due(self, trainer: L.Trainer) -> bool:
        step = trainer.global_step
        due = bool(self.every_n_steps) and step % self.every_n_steps == 0
        timed = bool(self.every_seconds) and time.monotonic() - self._last_save >= self.every_seconds
        if trainer.world_size > 1:  # clocks differ: save when any process says it is time
            timed = trainer.strategy.reduce_boolean_decision(timed, all=False)
        return due or timed

    def save(self, trainer: L.Trainer) -> None:
        if self.saved_steps and self.saved_steps[-1] == trainer.global_step:
            return
        if self.sessions:
            self.sessions[-1].update(to_step=trainer.global_step, seconds=round(time.monotonic() - self._started, 1))
        for logger in trainer.loggers:  # the log on disk reaches the checkpoint's step
            logger.save()
        trainer.save_checkpoint(self.path)
        self.saved_steps.append(trainer.global_step)
        self._last_save = time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, *_: Any) -> None:
        # Lightning's point for step checkpoints (its restore logic expects it). Lightning logs the step's
        # metrics right after the end-of-batch hooks: put this callback last, so that only those few
        # milliseconds separate the checkpoint from its step's row of metrics.csv
        if self._due(trainer):
            self.save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer)


def step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of training step ``step`` of process ``rank`` in a run seeded ``seed``."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, np.uint32)[0])


class StepSeed(Callback):
    """Seed every generator from ``(seed, rank, global step)`` before each training step."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer: L.Trainer, *_: Any) -> None:
        value = step_seed(self.seed, trainer.global_rank, trainer.global_step)
        torch.manual_seed(value)  # also seeds every CUDA device
        np.random.seed(value)
        random.seed(value)


def resume_position(checkpoint: dict[str, Any], batches_per_epoch: int) -> tuple[int, int]:
    """``(epoch, batch)`` the training loop continues at after restoring ``checkpoint``: the epoch it was
    written in and the batches of that epoch already trained on (the next epoch at batch 0 when the
    epoch was complete)."""
    loop = checkpoint.get("loops", {}).get("fit_loop", {})
    epoch = int(loop.get("epoch_progress", {}).get("current", {}).get("processed", checkpoint.get("epoch", 0)))
    # "processed": written from a batch's end hook, the batch is trained but not yet counted "completed"
    done = int(loop.get("epoch_loop.batch_progress", {}).get("current", {}).get("processed", 0))
    if batches_per_epoch and done >= batches_per_epoch:
        return epoch + 1, 0
    return epoch, done


class _KeepingWriter(ExperimentWriter):
    """Lightning's CSV writer, continuing an existing ``metrics.csv``: the rows before ``from_step``
    are kept (those after it are trained again and logged again), its columns are taken over."""

    def __init__(self, log_dir: str, from_step: int) -> None:
        self.from_step = from_step
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = list(reader.fieldnames or [])
            rows = [row for row in reader if _step_of(row) < self.from_step]
        tmp = temporary_sibling(path)
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(path)
        self.metrics_keys = sorted(columns)
        if columns != self.metrics_keys:  # the writer appends in sorted column order
            self._rewrite_with_new_header(self.metrics_keys)


def _step_of(row: dict[str, str]) -> float:
    try:
        return float(row.get("step") or 0)
    except ValueError:
        return 0.0


class AppendingCSVLogger(CSVLogger):
    """:class:`CSVLogger` into ``root/name``, keeping the rows of an earlier part of the run (steps
    before ``from_step``); ``from_step`` 0 starts a fresh file."""

    def __init__(self, root: Path, name: str, from_step: int = 0) -> None:
        # every logged row reaches the file at once: a killed run's log holds every step up to its checkpoint
        super().__init__(root, name=name, version="", flush_logs_every_n_steps=1)
        self.from_step = from_step

    @property
    def experiment(self) -> _ExperimentWriter:
        if self._experiment is None and rank_zero_only.rank == 0:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            if self.from_step > 0:
                self._experiment = _KeepingWriter(self.log_dir, self.from_step)
            else:
                self._experiment = ExperimentWriter(log_dir=self.log_dir)
        return super().experiment


def resume_checkpoint_path(resume: str | Path | None, out: Path) -> Path | None:
    """The checkpoint ``resume`` names: ``"auto"`` is ``OUT/checkpoints/last.ckpt`` when it exists (else
    None: a new run)."""
    if resume != "auto":
        return None if resume is None else Path(resume)
    last = out / "checkpoints" / LAST_CHECKPOINT
    if last.is_file():
        return last
    print(f"resume=auto: no checkpoint at '{last}' yet, starting the run")
    return None


def run_finished(checkpoint: dict[str, Any], max_steps: int, max_epochs: int) -> bool:
    """Whether ``checkpoint`` was written when its run had reached ``max_steps`` or ``max_epochs``."""
    epochs = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
    steps_done = max_steps > 0 and int(checkpoint.get("global_step", 0)) >= max_steps
    epochs_done = max_epochs > 0 and int(epochs.get("completed", 0)) >= max_epochs
    return steps_done or epochs_done


def launcher_rank() -> int:
    """This process's global rank as its launcher (torchrun, SLURM, Lightning) set it; 0 when alone."""
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "JSM_NAMESPACE_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


def checkpoint_bytes(model: torch.nn.Module) -> int:
    """About what one checkpoint of ``model`` takes on disk: weights and buffers, and two optimiser
    moments per weight (AdamW's)."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return 3 * params + buffers


def last_logged_loss(out: Path) -> float:
    """The last ``train/loss`` of ``OUT/logs/metrics.csv`` (a run resumed after its last step logs none)."""
    path = out / "logs" / "metrics.csv"
    if not path.is_file():
        return float("nan")
    with open(path, newline="", encoding="utf-8") as handle:
        values = [row.get("train/loss") for row in csv.DictReader(handle)]
    values = [v for v in values if v]
    return float(values[-1]) if values else float("nan")


__all__ = [
    "LAST_CHECKPOINT",
    "AppendingCSVLogger",
    "AtomicCheckpointIO",
    "PeriodicCheckpoint",
    "StepSeed",
    "checkpoint_bytes",
    "last_logged_loss",
    "launcher_rank",
    "resume_checkpoint_path",
    "resume_position",
    "run_finished",
    "step_seed",
]
