"""SimCLR (Chen et al., 2020): two augmented views of each image, an MLP projection, NT-Xent loss.

for x in loader:
    x1, x2 = augment(x), augment(x)
    z1, z2 = g(f(x1)), g(f(x2))
    loss = nt_xent(z1, z2, temperature)   # positives: the other view; negatives: the rest of the batch
"""

from __future__ import annotations

from typing import Any

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead

from eossl.methods.base import PretrainMethod


class SimCLR(PretrainMethod):
    def __init__(self, config: dict[str, Any], modality: dict[str, Any], stats: dict[str, list[float]]) -> None:
        super().__init__(config, modality, stats)
        method = config["method"]
        self.projection = SimCLRProjectionHead(self.num_features, method["hidden_dim"], method["projection_dim"])
        self.criterion = NTXentLoss(temperature=method["temperature"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x1, x2 = self.views(batch)
        z = self.projection(self.encoder(torch.cat([x1, x2])))
        z1, z2 = z.chunk(2)
        loss = self.criterion(z1, z2)
        self.log("train/loss", loss, prog_bar=True)
        self.log_embedding_health(z1)
        return loss
