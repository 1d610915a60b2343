"""SimCLR (Chen et al., 2020; v2: Chen et al., 2020b): two views, an MLP projection, NT-Xent.

for x in loader:
    x1, x2 = augment(x), augment(x)
    z1, z2 = g(f(x1)), g(f(x2))              # g: 2-layer MLP (v1) or 3-layer MLP (v2)
    loss = nt_xent(z1, z2, temperature)     # positive: the other view; negatives: the rest of the batch
Under DDP the negatives are the global batch: lightly gathers z1, z2 of every process with gradient.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from pydantic import Field

from eossl.methods.base import PretrainMethod
from eossl.methods.registry import METHODS, MethodConfig


class SimCLRConfig(MethodConfig):
    """SimCLR v1 (2-layer head) or v2 (3-layer head); NT-Xent over the batch."""

    family: ClassVar[str] = "contrastive"
    name: Literal["simclr"] = "simclr"
    version: Literal[1, 2] = 1
    temperature: float = Field(0.2, gt=0)  # paper: 0.5 (v1, batch 256) / 0.1 (v2); 0.2 beat 0.1 here
    hidden_dim: int = Field(512, gt=0)  # paper: 2048
    projection_dim: int = Field(128, gt=0)


@METHODS.register("simclr")
class SimCLR(PretrainMethod):
    config = SimCLRConfig

    def __init__(
        self, config: dict[str, Any], modalities: list[dict[str, Any]], stats: dict[str, dict[str, list[float]]]
    ) -> None:
        super().__init__(config, modalities, stats)
        hp = self.hp
        layers = 2 if hp.get("version", 1) == 1 else 3
        self.projection = SimCLRProjectionHead(self.num_features, hp["hidden_dim"], hp["projection_dim"], layers)
        # negatives from every process's batch (gathered with gradient; a no-op in one process)
        self.criterion = NTXentLoss(temperature=hp["temperature"], gather_distributed=True)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        z1, z2 = self.projected_views(batch)
        loss = self.criterion(z1, z2)
        self.log_loss(loss)
        return loss
