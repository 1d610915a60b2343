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

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from lightly.loss import SwaVLoss
from lightly.models.modules import SwaVProjectionHead, SwaVPrototypes

from eossl.methods.base import PretrainMethod


class SwAV(PretrainMethod):
    uses_local_views: ClassVar[bool] = True

    def __init__(self, config: dict[str, Any], modality: dict[str, Any], stats: dict[str, list[float]]) -> None:
        super().__init__(config, modality, stats)
        hp = self.hp
        self.projection = SwaVProjectionHead(self.num_features, hp["hidden_dim"], hp["projection_dim"])
        self.prototypes = SwaVPrototypes(hp["projection_dim"], hp["prototypes"], hp["freeze_prototypes_steps"])
        self.criterion = SwaVLoss(hp["temperature"], hp["sinkhorn_iterations"], hp["sinkhorn_epsilon"])

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
