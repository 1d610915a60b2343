"""The config shared by the protocols that train a head (and maybe part of the encoder)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ProtocolConfig(BaseModel):
    """Base of every protocol's config section: ``enabled`` switches the protocol on or off."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True


class TrainedProtocolConfig(ProtocolConfig):
    """A protocol that trains a head (and maybe part of the encoder) under the budget rule of
    :mod:`eossl.evaluation.budget`, the same for every init.

    Length: ``epochs`` over the labelled subset, at least ``min_steps``, at most ``max_steps`` when set.
    Rates: the grid ``lr`` x ``encoder_lr_factor`` (the encoder's rate is the factor times the heads'),
    chosen per init, task and fraction on the validation split; ``lr_search: first-seed`` searches on
    the first seed and reuses the choice for the others, ``every-seed`` searches on each.
    ``validations``: validation rounds per run (learning curve, early stopping, best weights kept);
    ``patience``: stop after that many rounds without improvement (0: never), but not before
    ``stop_after`` of the budget; ``converged_tolerance``: relative improvement in the last third of
    the rounds below which a run that used its whole budget counts as converged.
    ``tasks``/``fractions``: None means every task / fraction of the evaluation.
    """

    tasks: list[str] | None = None
    fractions: list[float] | None = None
    epochs: int = Field(30, ge=1)
    min_steps: int = Field(100, ge=1)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: list[float] = Field(default_factory=lambda: [2e-3], min_length=1)
    encoder_lr_factor: list[float] = Field(default_factory=lambda: [1.0, 0.1], min_length=1)
    lr_search: Literal["first-seed", "every-seed"] = "first-seed"
    weight_decay: float = Field(1e-4, ge=0)
    warmup_fraction: float = Field(0.1, ge=0, lt=1)
    validations: int = Field(10, ge=1)
    patience: int = Field(3, ge=0)
    stop_after: float = Field(0.5, ge=0, le=1)
    converged_tolerance: float = Field(0.01, ge=0)

    @field_validator("lr", "encoder_lr_factor", mode="before")
    @classmethod
    def _one_or_a_grid(cls, value: object) -> object:
        return [value] if isinstance(value, int | float) else value

    @field_validator("lr")
    @classmethod
    def _positive_rates(cls, value: list[float]) -> list[float]:
        if any(v <= 0 for v in value):
            raise ValueError(f"learning rates must be positive, got {value}")
        return value

    @field_validator("encoder_lr_factor")
    @classmethod
    def _non_negative_factors(cls, value: list[float]) -> list[float]:
        if any(v < 0 for v in value):
            raise ValueError(f"encoder learning-rate factors must be >= 0, got {value}")
        return value
