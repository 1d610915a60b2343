"""Self-supervised pretraining methods, selectable by name (``method.name`` in the pretrain config).

The registry maps names to import paths so that listing methods and validating configs stays light;
:func:`method_class` imports a method when it is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from eossl.methods.hparams import METHOD_CONFIGS

if TYPE_CHECKING:
    from eossl.methods.base import PretrainMethod
    from eossl.methods.cross_modal import CrossModalMethod

METHODS: dict[str, str] = {
    "simclr": "eossl.methods.simclr:SimCLR",
    "moco-v2": "eossl.methods.moco:MoCoV2",
    "moco-v3": "eossl.methods.moco:MoCoV3",
    "byol": "eossl.methods.byol:BYOL",
    "simsiam": "eossl.methods.simsiam:SimSiam",
    "dino": "eossl.methods.dino:DINO",
    "barlow-twins": "eossl.methods.barlow_twins:BarlowTwins",
    "vicreg": "eossl.methods.vicreg:VICReg",
    "swav": "eossl.methods.swav:SwAV",
    "mae": "eossl.methods.mae:MAE",
    "seco": "eossl.methods.seco:SeCo",
    "dual-simclr": "eossl.methods.cross_modal:DualSimCLR",
    "mma": "eossl.methods.cross_modal:MMA",
}
assert set(METHODS) == set(METHOD_CONFIGS), "every method needs a config in hparams.py and a class"


def method_class(name: str) -> type[PretrainMethod] | type[CrossModalMethod]:
    """The class of method ``name``; raises ``KeyError`` naming the known methods."""
    if name not in METHODS:
        raise KeyError(f"unknown method '{name}' (available: {', '.join(METHODS)})")
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["METHODS", "method_class"]
