"""Objectives between two embeddings of the same samples, by name (the cross-modal ``method.objective``):
builders ``(temperature) -> loss module`` taking ``(z_a, z_b)``.

lightly's NT-Xent (with ``temperature``), VICReg and Barlow Twins losses (paper weights; the temperature
applies to NT-Xent only). Adding one is one more registered function here.
"""

from __future__ import annotations

from lightly.loss import BarlowTwinsLoss, NTXentLoss, VICRegLoss
from torch import nn

from eossl.registry import Registry

OBJECTIVES: Registry = Registry("objective")


@OBJECTIVES.register("nt-xent")
def nt_xent(temperature: float) -> nn.Module:
    return NTXentLoss(temperature=temperature)


@OBJECTIVES.register("vicreg")
def vicreg(temperature: float) -> nn.Module:
    return VICRegLoss()


@OBJECTIVES.register("barlow-twins")
def barlow_twins(temperature: float) -> nn.Module:
    return BarlowTwinsLoss()


__all__ = ["OBJECTIVES"]
