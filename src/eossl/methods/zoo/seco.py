"""SeCo (Mañas et al., 2021, Seasonal Contrast): MoCo v2 whose positives are other seasons of the same place.

for x0, x1, x2 in loader:                      # three scenes (dates) of one place; x0 is the sample's own
    a, b = two random augmentations             # each applied with identical parameters to its two scenes
    q  = f(a(x0))
    k0 = f_m(b(x1))                             # other season, other augmentation
    k1 = f_m(a(x2))                             # other season, same augmentation as q
    k2 = f_m(b(x0))                             # same season, other augmentation
    for each subspace Z_i (projection head g_i, momentum head g_m_i, queue_i):
        z(v) = normalize(g_i(v)) for q;  normalize(g_m_i(v)) for keys
        Z0 (invariant to season and augmentation): positives k0, k1, k2;  negatives queue_0
        Z1 (invariant to season only):             positive k1;  negatives queue_1 + k0, k2
        Z2 (invariant to augmentation only):       positive k2;  negatives queue_2 + k0, k1
        loss_i = mean over its positives p of info_nce(z(q), z(p), negatives, temperature)
        enqueue(queue_i, z(k_i))
    loss = mean_i loss_i;  f_m, g_m <- EMA of f, g
heads=1: only Z0, with q = f(a(x0)) and the single positive k0 = f_m(b(x1)) (MoCo v2 with temporal positives).
The shared backbone f is the exported encoder. The paper's code sums the subspace losses and takes only
k0 as Z0's positive; here Z0 averages the three positives' InfoNCE terms and the loss averages subspaces.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from lightly.models.modules import MoCoProjectionHead
from pydantic import Field
from torch import nn

from eossl.data.augment import apply_alike
from eossl.methods.base import PretrainMethod
from eossl.methods.distributed import gather_keys
from eossl.methods.registry import METHODS, MethodConfig
from eossl.methods.zoo.moco import info_nce, ring_enqueue

# per subspace Z_i: (keys that are positives for q, keys that are extra negatives); keys are k0, k1, k2
SUBSPACES: dict[int, tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]] = {
    3: (((0, 1, 2), ()), ((1,), (0, 2)), ((2,), (0, 1))),
    1: (((0,), ()),),
}


class SeCoConfig(MethodConfig):
    """SeCo: MoCo v2 with other seasons of a place as positives, in 1 or 3 embedding subspaces."""

    family: ClassVar[str] = "contrastive"
    name: Literal["seco"] = "seco"
    pairing: Literal["temporal"] = "temporal"  # SeCo's positives are other dates by definition
    heads: Literal[1, 3] = 3  # 3: subspaces invariant to both / to season / to augmentation; 1: MoCo-TP
    temperature: float = Field(0.2, gt=0)  # paper's code: 0.07; MoCo v2's 0.2 is kept as for moco-v2
    queue_size: int = Field(4096, gt=0)  # paper: 16384; one queue per subspace
    momentum: float = Field(0.99, ge=0, le=1)  # paper: 0.999; see moco-v2
    hidden_dim: int = Field(512, gt=0)  # paper: 512 (ResNet-18), 2048 (ResNet-50)
    projection_dim: int = Field(128, gt=0)  # paper: 128

    @property
    def dates(self) -> int:
        """Three scenes per place with three subspaces (query season and two others), else two."""
        return 3 if self.heads == 3 else 2


@METHODS.register("seco")
class SeCo(PretrainMethod):
    config = SeCoConfig

    def __init__(
        self, config: dict[str, Any], modalities: list[dict[str, Any]], stats: dict[str, dict[str, list[float]]]
    ) -> None:
        super().__init__(config, modalities, stats)
        hp = self.hp
        self.subspaces = SUBSPACES[hp["heads"]]
        n = len(self.subspaces)
        self.projections = nn.ModuleList(
            MoCoProjectionHead(self.num_features, hp["hidden_dim"], hp["projection_dim"]) for _ in range(n)
        )
        self.momentum_encoder, self.momentum_projections = self.momentum_copy(self.encoder, self.projections)
        queue = F.normalize(torch.randn(n, hp["queue_size"], hp["projection_dim"]), dim=2)
        self.register_buffer("queue", queue)  # one ring buffer of past keys per subspace
        self.register_buffer("queue_pointer", torch.zeros(n, dtype=torch.long))

    def enqueue(self, subspace: int, keys: torch.Tensor) -> None:
        """Replace the oldest keys of subspace ``subspace``'s queue with this batch's keys (those of every
        process under DDP, so the queues stay identical on all of them)."""
        ring_enqueue(self.queue[subspace], self.queue_pointer[subspace], gather_keys(keys))

    def key_views(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``a(x0)`` and the key images: ``[b(x1)]`` (1 head) or ``[b(x1), a(x2), b(x0)]`` (3 heads)."""
        if len(self.subspaces) == 1:
            x0, x1 = self.scenes(batch, 2)
            return self.augmented(x0), [self.augmented(x1)]
        x0, x1, x2 = self.scenes(batch, 3)
        query, k1 = apply_alike(self.augmented, x0, x2)
        k0, k2 = apply_alike(self.augmented, x1, x0)
        return query, [k0, k1, k2]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        query, keys = self.key_views(batch)
        h = self.encoder(query)
        self.ema(
            [(self.encoder, self.momentum_encoder), (self.projections, self.momentum_projections)], self.hp["momentum"]
        )
        with torch.no_grad():
            h_keys = self.momentum_encoder(torch.cat(keys))
        losses = []
        for i, (positives, extra_negatives) in enumerate(self.subspaces):
            q = F.normalize(self.projections[i](h), dim=1)
            with torch.no_grad():
                k = F.normalize(self.momentum_projections[i](h_keys), dim=1).chunk(len(keys))
            negatives = torch.cat([self.queue[i].clone(), *(k[j].to(self.queue.dtype) for j in extra_negatives)])
            losses.append(torch.stack([info_nce(q, k[p], negatives, self.hp["temperature"]) for p in positives]).mean())
            self.enqueue(i, k[i])
        loss = torch.stack(losses).mean()
        self.log_loss(loss, **{f"loss_z{i}": value.detach() for i, value in enumerate(losses)})
        return loss
