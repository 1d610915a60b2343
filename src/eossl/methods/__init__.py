"""Self-supervised pretraining methods, selectable by name (``method.name`` in the pretrain config)."""

from __future__ import annotations

from eossl.methods.base import PretrainMethod
from eossl.methods.simclr import SimCLR

METHODS: dict[str, type[PretrainMethod]] = {"simclr": SimCLR}

__all__ = ["METHODS", "PretrainMethod", "SimCLR"]
