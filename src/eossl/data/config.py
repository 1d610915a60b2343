"""The ``data`` section of run configs: which store, which modalities, batches and splits (pydantic only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def _store_location(value: object) -> object:
    """A URL (``s3://``, ``https://``) stays text; anything else is a local path."""
    text = str(value)
    if "://" in text and not text.startswith("file://"):
        return text
    return Path(text.removeprefix("file://")) if isinstance(value, (str, Path)) else value


StoreLocation = Annotated[Path | str, BeforeValidator(_store_location)]
"""A store folder or the URL of a remote store (read through fsspec)."""


class DataConfig(BaseModel):
    """The store a run reads, its modality (or, for cross-modal pretraining, modalities) and the splits."""

    model_config = ConfigDict(extra="forbid")

    store: StoreLocation
    modality: str = "s2"
    # cross-modal pretraining (dual-simclr, mma): co-registered modalities, the first is the anchor
    modalities: list[str] | None = None
    batch_size: int = Field(128, ge=2)
    num_workers: int = Field(0, ge=0)
    val: float = 0.1
    test: float = 0.2
    split_seed: int = 0
    in_memory: bool | Literal["auto"] = "auto"


__all__ = ["DataConfig"]
