"""The ``eossl pretrain`` config: data, encoder, method, optimiser, trainer, augmentation, health.

The ``method`` section is a union of every registered method's config, tagged by ``method.name``
and generated from :data:`eossl.methods.registry.METHODS` (a new method file in the zoo is a new
choice here); the optimiser choices come from :data:`eossl.methods.optimizers.OPTIMIZERS`.
"""

from __future__ import annotations

import functools
import operator
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from eossl.data.augment import AugmentConfig
from eossl.data.config import DataConfig
from eossl.methods.optimizers import OPTIMIZERS
from eossl.methods.registry import METHODS, MethodConfig
from eossl.models.config import EncoderConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _method_configs() -> list[type[MethodConfig]]:
    """Every registered method's config class, checked to carry its registered name as its tag."""
    configs = []
    for name, method in METHODS.items():
        config = getattr(method, "config", None)
        if not (isinstance(config, type) and issubclass(config, MethodConfig)):
            raise RuntimeError(f"method '{name}' ({method!r}) has no 'config' class attribute (a MethodConfig)")
        tag = config.model_fields["name"].default
        if tag != name:
            raise RuntimeError(f"method '{name}': its config {config.__name__} has name {tag!r}, not '{name}'")
        configs.append(config)
    return configs


AnyMethodConfig = Annotated[functools.reduce(operator.or_, _method_configs()), Field(discriminator="name")]
"""One of the registered methods' configs, chosen by ``name``."""


def _default_method() -> MethodConfig:
    return METHODS["simclr"].config()


class HealthConfig(_Strict):
    """Collapse and health monitoring during pretraining (see :mod:`eossl.methods.health`)."""

    every_n_steps: int = Field(10, gt=0)
    # collapsed when std * sqrt(dim) of L2-normalised features (1 = isotropic, 0 = one point) falls below
    collapse_std: float = Field(0.02, ge=0)
    # ... or when the effective rank of the centred batch features (1..dim) falls below
    collapse_rank: float = Field(1.5, ge=0)
    # stop when the features stay collapsed this many steps (0: warn only)
    stop_after_steps: int = Field(100, ge=0)
    knn_every_n_steps: int = Field(100, ge=0)  # 0: only at the end of training
    knn_k: int = Field(20, gt=0)
    knn_bank_size: int = Field(2000, gt=0)
    knn_query_size: int = Field(1000, gt=0)


class OptimConfig(_Strict):
    optimizer: Literal[tuple(OPTIMIZERS.names())] = "adamw"  # type: ignore[valid-type]
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_fraction: float = Field(0.05, ge=0, lt=1)


class TrainerConfig(_Strict):
    """Lightning ``Trainer`` settings; ``devices``/``num_nodes``/``strategy`` scale a run over processes.

    ``data.batch_size`` is the batch of each process: the global batch is ``batch_size x devices x
    num_nodes`` (see ``docs/distributed.md``).
    """

    max_epochs: int = 100  # -1: no limit (then max_steps ends the run)
    max_steps: int = -1  # -1: no limit (then max_epochs ends the run)
    accelerator: str = "auto"
    precision: str = "auto"
    log_every_n_steps: int = 10
    progress_bar: bool = True
    devices: int | Literal["auto"] = "auto"  # processes (GPUs, or CPU processes) per node
    num_nodes: int = Field(1, ge=1)
    # auto: one process, or DDP when devices > 1; ddp on CPU uses gloo; fsdp needs CUDA GPUs
    strategy: Literal["auto", "ddp", "fsdp", "ddp_spawn"] = "auto"
    sync_batchnorm: bool = False  # BatchNorm statistics over the global batch (all processes)
    # OUT/checkpoints/last.ckpt is written atomically every N steps and/or M minutes of training (0: off)
    # and at the end; a killed run continues from it with resume=auto (docs/reliability.md)
    checkpoint_every_n_steps: int = Field(0, ge=0)
    checkpoint_every_minutes: float = Field(10.0, ge=0)

    @field_validator("max_epochs", "max_steps")
    @classmethod
    def _trains_something(cls, value: int) -> int:
        if value == 0 or value < -1:
            raise ValueError(f"must be a positive number or -1 (no limit), got {value}: the run would train nothing")
        return value

    @field_validator("devices")
    @classmethod
    def _some_devices(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"must be 'auto' or a number of processes per node >= 1, got {value}")
        return value

    @model_validator(mode="after")
    def _fsdp_on_gpus(self) -> TrainerConfig:
        if self.strategy == "fsdp" and self.accelerator == "cpu":
            raise ValueError(FSDP_NEEDS_CUDA)
        return self


FSDP_NEEDS_CUDA = (
    "strategy 'fsdp' shards parameters across CUDA GPUs and cannot run on CPU; "
    "use trainer.strategy=ddp (gloo) on CPU, or trainer.accelerator=gpu"
)


class PretrainConfig(_Strict):
    """``eossl pretrain``: one self-supervised run on one store."""

    out: Path = Path("runs/pretrain")
    seed: int = 0
    data: DataConfig
    encoder: EncoderConfig = EncoderConfig()
    method: AnyMethodConfig = Field(default_factory=_default_method)  # type: ignore[valid-type]
    optim: OptimConfig = OptimConfig()
    trainer: TrainerConfig = TrainerConfig()
    augment: AugmentConfig = AugmentConfig()
    health: HealthConfig = HealthConfig()
    # a checkpoint to continue from (optimizer, schedule, step and data position included), or "auto":
    # OUT/checkpoints/last.ckpt when it exists (else a new run)
    resume: Literal["auto"] | Path | None = None

    @model_validator(mode="after")
    def _apply_method_recipe(self) -> PretrainConfig:
        """Fill the method's recipe into every section key the user left at its default."""
        for section, defaults in type(self.method).recipe.items():
            current = getattr(self, section)
            if section == "encoder" and "name" in current.model_fields_set:
                continue  # the user chose another encoder: the recipe's sizes were for the recipe's one
            unset = {k: v for k, v in defaults.items() if k not in current.model_fields_set}
            if unset:
                updated = type(current).model_validate({**current.model_dump(exclude_unset=True), **unset})
                setattr(self, section, updated)
        return self


__all__ = ["FSDP_NEEDS_CUDA", "AnyMethodConfig", "HealthConfig", "OptimConfig", "PretrainConfig", "TrainerConfig"]
