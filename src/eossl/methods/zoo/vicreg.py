"""VICReg (Bardes, Ponce & LeCun, 2022): variance-invariance-covariance regularisation.

for x in loader:
    z1, z2 = g(f(augment(x))), g(f(augment(x)))
    loss = lambda * mse(z1, z2)                                       # invariance
         + mu * mean(relu(1 - std(z1))) + mu * mean(relu(1 - std(z2)))   # variance: keep every dim alive
         + nu * (offdiag(cov(z1))^2 + offdiag(cov(z2))^2) / D             # covariance: decorrelate dims
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from lightly.loss import VICRegLoss
from lightly.models.modules.heads import VICRegProjectionHead
from pydantic import Field

from eossl.methods.base import PretrainMethod
from eossl.methods.registry import METHODS, MethodConfig


class VICRegConfig(MethodConfig):
    """VICReg: invariance + variance (hinge on std) + covariance (decorrelation) terms."""

    family: ClassVar[str] = "redundancy"
    name: Literal["vicreg"] = "vicreg"
    invariance_weight: float = Field(25.0, ge=0)  # paper: lambda = 25
    variance_weight: float = Field(25.0, ge=0)  # paper: mu = 25
    covariance_weight: float = Field(1.0, ge=0)  # paper: nu = 1
    hidden_dim: int = Field(2048, gt=0)  # paper: 8192
    projection_dim: int = Field(2048, gt=0)  # paper: 8192


@METHODS.register("vicreg")
class VICReg(PretrainMethod):
    config = VICRegConfig

    def __init__(
        self, config: dict[str, Any], modalities: list[dict[str, Any]], stats: dict[str, dict[str, list[float]]]
    ) -> None:
        super().__init__(config, modalities, stats)
        hp = self.hp
        self.projection = VICRegProjectionHead(self.num_features, hp["hidden_dim"], hp["projection_dim"])
        self.criterion = VICRegLoss(
            lambda_param=hp["invariance_weight"],
            mu_param=hp["variance_weight"],
            nu_param=hp["covariance_weight"],
            gather_distributed=True,  # variance and covariance over the global batch under DDP
        )

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        z1, z2 = self.projected_views(batch)
        loss = self.criterion(z1.float(), z2.float())
        self.log_loss(loss)
        return loss
