"""The config shared by the protocols that train a head (and maybe part of the encoder)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ProtocolConfig(BaseModel):
    """Base of every protocol's config section: ``enabled`` switches the protocol on or off."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True


class TrainedProtocolConfig(ProtocolConfig):
    """A protocol that trains a head (and maybe part of the encoder) with gradient descent.

    ``validations``: rounds of validation per run (the learning curve, early stopping and the choice
    of the best weights); ``patience``: stop after that many rounds without improvement (0: never).
    ``tasks``/``fractions``: None means every task / fraction of the evaluation.
    """

    tasks: list[str] | None = None
    fractions: list[float] | None = None
    epochs: int = Field(30, ge=1)
    min_steps: int = Field(30, ge=1)
    max_steps: int = Field(300, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)
    encoder_lr_factor: float = Field(0.1, ge=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_fraction: float = Field(0.1, ge=0, lt=1)
    validations: int = Field(8, ge=1)
    patience: int = Field(3, ge=0)
