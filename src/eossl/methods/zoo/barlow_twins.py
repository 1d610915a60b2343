"""Barlow Twins (Zbontar et al., 2021): make the two views' cross-correlation matrix the identity.

for x in loader:
    z1, z2 = g(f(augment(x))), g(f(augment(x)))
    c = bn(z1).T @ bn(z2) / N                                   # D x D cross-correlation
    loss = sum_i (1 - c_ii)^2 + lambda * sum_{i != j} c_ij^2      # invariance + redundancy reduction
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from lightly.loss import BarlowTwinsLoss
from lightly.models.modules import BarlowTwinsProjectionHead
from pydantic import Field

from eossl.methods.base import PretrainMethod
from eossl.methods.registry import METHODS, MethodConfig


class BarlowTwinsConfig(MethodConfig):
    """Barlow Twins: the cross-correlation of the two views' embeddings is driven to the identity."""

    family: ClassVar[str] = "redundancy"
    name: Literal["barlow-twins"] = "barlow-twins"
    lambda_offdiag: float = Field(5e-3, ge=0)  # paper: 5e-3
    hidden_dim: int = Field(2048, gt=0)  # paper: 8192
    projection_dim: int = Field(2048, gt=0)  # paper: 8192


@METHODS.register("barlow-twins")
class BarlowTwins(PretrainMethod):
    config = BarlowTwinsConfig

    def __init__(
        self, config: dict[str, Any], modalities: list[dict[str, Any]], stats: dict[str, dict[str, list[float]]]
    ) -> None:
        super().__init__(config, modalities, stats)
        hp = self.hp
        self.projection = BarlowTwinsProjectionHead(self.num_features, hp["hidden_dim"], hp["projection_dim"])
        # under DDP the cross-correlation is averaged over processes (each normalises its own batch)
        self.criterion = BarlowTwinsLoss(lambda_param=hp["lambda_offdiag"], gather_distributed=True)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        z1, z2 = self.projected_views(batch)
        loss = self.criterion(z1.float(), z2.float())
        self.log_loss(loss)
        return loss
