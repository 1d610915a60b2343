"""The registry of pretraining methods and the base of their config sections (pydantic only).

A method is one file of :mod:`eossl.methods.zoo` holding its config (a :class:`MethodConfig`) and its
LightningModule, registered by name::

    class SimCLRConfig(MethodConfig):
        name: Literal["simclr"] = "simclr"
        temperature: float = Field(0.2, gt=0)

    @METHODS.register("simclr")
    class SimCLR(PretrainMethod):
        config = SimCLRConfig
        ...

Nothing else lists it: the pretrain config's ``method`` union (:mod:`eossl.methods.config`),
``eossl methods``, ``eossl bench --method all`` and the tests read :data:`METHODS`.

Each config's defaults follow its paper, scaled down where the paper's sizes assume ImageNet and 8
GPUs (the comment beside each says what the paper used). ``recipe`` holds the method's defaults for
other sections (augmentation, optimiser, encoder); they apply only to keys the user did not set.
``pairing`` says where a method's two global views come from: two augmentations of one scene
(``augment``), or the scene and another date of its place (``temporal``, each still augmented).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from eossl.registry import Registry

Pairing = Literal["augment", "temporal"]

METHODS: Registry = Registry("method", packages=("eossl.methods.zoo",))
"""Pretraining methods by name: LightningModule classes with their config class as ``config``."""


class MethodConfig(BaseModel):
    """The ``method`` section common to every method; each method narrows ``name`` to its own literal."""

    model_config = ConfigDict(extra="forbid")
    recipe: ClassVar[dict[str, dict[str, Any]]] = {}
    # which encoder of the trained module is the one to evaluate and export
    export: ClassVar[str] = "encoder"
    family: ClassVar[str] = ""
    # trains on several co-registered modalities (``data.modalities``, anchor first), not ``data.modality``
    cross_modal: ClassVar[bool] = False
    name: str  # each method narrows it to its own literal (the tag of the config union)
    pairing: Pairing = "augment"  # temporal: the second global view is another date of the same place

    @property
    def dates(self) -> int:
        """Scenes of one place each training sample needs (``EODataModule(dates=...)``)."""
        return 2 if self.pairing == "temporal" else 1


def method_config(name: str) -> type[MethodConfig]:
    """The config class of method ``name`` (:class:`~eossl.errors.UnknownNameError` naming the methods)."""
    return METHODS[name].config


__all__ = ["METHODS", "MethodConfig", "Pairing", "method_config"]
