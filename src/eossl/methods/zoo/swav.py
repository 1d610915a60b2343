"""SwAV (Caron et al., 2020): predict one view's cluster assignment (code) from another view.

for x in loader:
    z = normalize(g(f(views)))                  # 2 global + n local crops
    scores = z @ normalize(prototypes).T        # K learnable prototypes
    q = sinkhorn_knopp(scores of global views)  # equal-partition soft codes, no gradient
    loss = -sum over views v != global i of q_i * log_softmax(scores_v / temperature)
Prototypes are frozen for the first steps, as in the paper. No feature queue (the paper adds one for
small batches; here a batch of 128 meets 64 prototypes).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from lightly.loss import SwaVLoss
from lightly.models.modules import SwaVProjectionHead, SwaVPrototypes
from pydantic import Field

from eossl.methods.base import PretrainMethod
from eossl.methods.registry import METHODS, MethodConfig


class SwAVConfig(MethodConfig):
    """SwAV: swapped prediction of Sinkhorn-Knopp cluster assignments over learnable prototypes."""

    family: ClassVar[str] = "clustering"
    recipe: ClassVar[dict[str, dict[str, Any]]] = {"augment": {"local_views": 4}}
    name: Literal["swav"] = "swav"
    prototypes: int = Field(64, gt=1)  # paper: 3000 for ImageNet's 1000 classes; the synthetic Earth has 11
    temperature: float = Field(0.1, gt=0)
    sinkhorn_iterations: int = Field(3, gt=0)
    sinkhorn_epsilon: float = Field(0.05, gt=0)
    freeze_prototypes_steps: int = Field(50, ge=0)  # paper: the first epoch
    hidden_dim: int = Field(512, gt=0)  # paper: 2048
    projection_dim: int = Field(128, gt=0)


@METHODS.register("swav")
class SwAV(PretrainMethod):
    config = SwAVConfig
    uses_local_views: ClassVar[bool] = True
    # the prototypes get no gradient while frozen (freeze_prototypes_steps): DDP must look for unused ones
    ddp_find_unused_parameters: ClassVar[bool] = True

    def __init__(
        self, config: dict[str, Any], modalities: list[dict[str, Any]], stats: dict[str, dict[str, list[float]]]
    ) -> None:
        super().__init__(config, modalities, stats)
        hp = self.hp
        self.projection = SwaVProjectionHead(self.num_features, hp["hidden_dim"], hp["projection_dim"])
        self.prototypes = SwaVPrototypes(hp["projection_dim"], hp["prototypes"], hp["freeze_prototypes_steps"])
        # Sinkhorn-Knopp's equal partition over the global batch under DDP (a no-op in one process)
        self.criterion = SwaVLoss(
            hp["temperature"], hp["sinkhorn_iterations"], hp["sinkhorn_epsilon"], sinkhorn_gather_distributed=True
        )

    def scores(self, views: torch.Tensor, count: int) -> list[torch.Tensor]:
        z = F.normalize(self.projection(self.encoder(views)).float(), dim=1)
        return list(self.prototypes(z, step=self.global_step).chunk(count))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.prototypes.normalize()
        views = self.views(batch)
        high_resolution = self.scores(torch.cat(views[:2]), 2)
        low_resolution = self.scores(torch.cat(views[2:]), len(views) - 2) if len(views) > 2 else []
        loss = self.criterion(high_resolution, low_resolution).reshape(())  # lightly returns shape [1]
        self.log_loss(loss)
        return loss
