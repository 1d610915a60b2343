"""Barlow Twins (Zbontar et al., 2021): make the two views' cross-correlation matrix the identity.

for x in loader:
    z1, z2 = g(f(augment(x))), g(f(augment(x)))
    c = bn(z1).T @ bn(z2) / N                                   # D x D cross-correlation
    loss = sum_i (1 - c_ii)^2 + lambda * sum_{i != j} c_ij^2      # invariance + redundancy reduction
"""

from __future__ import annotations

from typing import Any

import torch
from lightly.loss import BarlowTwinsLoss
from lightly.models.modules import BarlowTwinsProjectionHead

from eossl.methods.base import PretrainMethod


class BarlowTwins(PretrainMethod):
    def __init__(self, config: dict[str, Any], modality: dict[str, Any], stats: dict[str, list[float]]) -> None:
        super().__init__(config, modality, stats)
        hp = self.hp
        self.projection = BarlowTwinsProjectionHead(self.num_features, hp["hidden_dim"], hp["projection_dim"])
        self.criterion = BarlowTwinsLoss(lambda_param=hp["lambda_offdiag"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        z1, z2 = self.projected_views(batch)
        loss = self.criterion(z1.float(), z2.float())
        self.log_loss(loss)
        return loss
