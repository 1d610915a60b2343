"""SimSiam (Chen & He, 2021): BYOL without a momentum encoder; the stop-gradient prevents collapse.

for x in loader:
    x1, x2 = augment(x), augment(x)
    z1, z2 = g(f(x1)), g(f(x2))                # projector with BN on its output
    p1, p2 = h(z1), h(z2)                      # predictor with a 4x bottleneck
    loss = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2,   D = negative cosine similarity
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead
from pydantic import Field

from eossl.methods.base import PretrainMethod
from eossl.methods.registry import METHODS, MethodConfig


class SimSiamConfig(MethodConfig):
    """SimSiam: BYOL without the momentum encoder; the stop-gradient alone prevents collapse."""

    family: ClassVar[str] = "distillation"
    name: Literal["simsiam"] = "simsiam"
    projection_dim: int = Field(512, gt=0)  # paper: 2048
    prediction_hidden_dim: int = Field(128, gt=0)  # paper: 512 (a 4x bottleneck, kept)


@METHODS.register("simsiam")
class SimSiam(PretrainMethod):
    config = SimSiamConfig

    def __init__(
        self, config: dict[str, Any], modalities: list[dict[str, Any]], stats: dict[str, dict[str, list[float]]]
    ) -> None:
        super().__init__(config, modalities, stats)
        dim = self.hp["projection_dim"]
        self.projection = SimSiamProjectionHead(self.num_features, dim, dim)
        self.prediction = SimSiamPredictionHead(dim, self.hp["prediction_hidden_dim"], dim)
        self.criterion = NegativeCosineSimilarity()

    def distance(self, p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """D(p, sg(z)): negative cosine similarity against a target that gets no gradient."""
        return self.criterion(p.float(), z.detach().float())

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        z1, z2 = self.projected_views(batch)
        p1, p2 = self.prediction(z1), self.prediction(z2)
        loss = self.distance(p1, z2) / 2 + self.distance(p2, z1) / 2
        self.log_loss(loss)
        return loss
