"""BYOL (Grill et al., 2020): the online network predicts the target network's view of the same image.

for x in loader:
    x1, x2 = augment(x), augment(x)
    p1, p2 = q(g(f(x1))), q(g(f(x2)))          # online: encoder f, projector g, predictor q
    z1, z2 = g_t(f_t(x1)), g_t(f_t(x2))        # target: EMA of f, g with momentum 0.996 -> 1 (cosine)
    loss = (2 - 2 cos(p1, sg(z2)) + 2 - 2 cos(p2, sg(z1))) / 2
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from pydantic import Field

from eossl.methods.base import PretrainMethod
from eossl.methods.registry import METHODS, MethodConfig


class BYOLConfig(MethodConfig):
    """BYOL: online network predicts the momentum target network's projection of the other view."""

    family: ClassVar[str] = "distillation"
    name: Literal["byol"] = "byol"
    momentum_start: float = Field(0.99, ge=0, le=1)  # paper: 0.996 -> 1 (cosine) over 300+ epochs
    momentum_end: float = Field(1.0, ge=0, le=1)
    hidden_dim: int = Field(1024, gt=0)  # paper: 4096
    projection_dim: int = Field(256, gt=0)


@METHODS.register("byol")
class BYOL(PretrainMethod):
    config = BYOLConfig

    def __init__(
        self, config: dict[str, Any], modalities: list[dict[str, Any]], stats: dict[str, dict[str, list[float]]]
    ) -> None:
        super().__init__(config, modalities, stats)
        hidden, dim = self.hp["hidden_dim"], self.hp["projection_dim"]
        self.projection = BYOLProjectionHead(self.num_features, hidden, dim)
        self.prediction = BYOLPredictionHead(dim, hidden, dim)
        self.target_encoder, self.target_projection = self.momentum_copy(self.encoder, self.projection)
        self.negative_cosine = NegativeCosineSimilarity()

    def regression_loss(self, p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """BYOL's normalised MSE, 2 - 2 cos(p, z), against a target that gets no gradient."""
        return 2 + 2 * self.negative_cosine(p.float(), z.detach().float())

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x1, x2 = self.views(batch)
        momentum = self.cosine(self.hp["momentum_start"], self.hp["momentum_end"])
        self.ema([(self.encoder, self.target_encoder), (self.projection, self.target_projection)], momentum)
        p1, p2 = self.prediction(self.projection(self.encoder(torch.cat([x1, x2])))).chunk(2)
        with torch.no_grad():
            z1, z2 = self.target_projection(self.target_encoder(torch.cat([x1, x2]))).chunk(2)
        loss = (self.regression_loss(p1, z2) + self.regression_loss(p2, z1)) / 2
        self.log_loss(loss, momentum=momentum)
        return loss
