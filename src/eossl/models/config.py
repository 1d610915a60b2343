"""The ``encoder`` section of run configs (pydantic only): which timm model and how it is adapted to
small multispectral patches (built by :func:`eossl.models.encoders.encoder_from_config`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EncoderConfig(BaseModel):
    """A timm model; ``stem``/``output_stride`` adapt CNNs, ``patch_size`` ViTs, to small patches."""

    model_config = ConfigDict(extra="forbid")

    name: str = "resnet18"
    stem: Literal["imagenet", "no-maxpool", "small"] = "imagenet"
    # CNNs: None means 16 where the model supports it (a 32-px patch keeps a 2x2 map), else native
    output_stride: Literal[8, 16, 32] | None = None
    patch_size: int | None = Field(None, gt=0)  # ViTs only; None keeps the model's own
    img_size: int | None = Field(None, gt=0)  # ViTs only; None takes the store's patch size
    # set: a learned per-pixel 1-D spectral reducer (SpectralEarth's adapter) maps any band count to this
    # many channels, and the named encoder is built for them (eossl.models.encoder_zoo.spectral)
    spectral_channels: int | None = Field(None, gt=0)

    def with_img_size(self, size: int) -> EncoderConfig:
        """This config with ``img_size`` taken from the data when unset (ViTs need it; CNNs ignore it)."""
        return self if self.img_size is not None else self.model_copy(update={"img_size": size})


__all__ = ["EncoderConfig"]
