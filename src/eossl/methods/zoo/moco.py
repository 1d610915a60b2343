"""MoCo v2 (Chen et al., 2020) and MoCo v3 (Chen, Xie & He, 2021): contrast against a momentum encoder.

MoCo v2:
    q = normalize(g(f(x_q)));  k = normalize(g_m(f_m(x_k)))      # f_m, g_m: EMA of f, g
    logits = [q.k, q.queue] / t;  loss = cross_entropy(logits, 0)  # queue: past keys = negatives
    enqueue(k); dequeue(oldest)
MoCo v3 (no queue, predictor on the query side, symmetric):
    q1, q2 = h(g(f(x1))), h(g(f(x2)));  k1, k2 = g_m(f_m(x1)), g_m(f_m(x2))
    loss = ctr(q1, k2) + ctr(q2, k1);  ctr(q, k) = 2t * cross_entropy(q k^T / t, arange(N))
Batch-shuffle BN is omitted: with one device the key batch statistics are the same either way; under DDP
use ``trainer.sync_batchnorm`` (statistics over the global batch). Under DDP the keys of every process
are gathered (no gradient): v2 enqueues them all, so the queue is the same on every process; v3 contrasts
each query against the keys of the global batch, as the paper's code does.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from lightly.models.modules import MoCoProjectionHead
from pydantic import Field

from eossl.methods.base import PretrainMethod
from eossl.methods.distributed import gather_keys, key_labels
from eossl.methods.registry import METHODS, MethodConfig


@torch.no_grad()
def ring_enqueue(queue: torch.Tensor, pointer: torch.Tensor, keys: torch.Tensor) -> None:
    """Replace the oldest rows of ``queue`` (a ring buffer, next slot at ``pointer``) with ``keys``, in place."""
    n, size = len(keys), len(queue)
    positions = (pointer + torch.arange(n, device=keys.device)) % size
    queue[positions] = keys.to(queue.dtype)
    pointer.copy_((pointer + n) % size)


def info_nce(q: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo's InfoNCE: normalised queries ``q`` [N, D] against their positive key [N, D] and ``negatives`` [K, D]."""
    logits = torch.cat([(q * positive).sum(dim=1, keepdim=True), q @ negatives.to(q.dtype).T], dim=1) / temperature
    return F.cross_entropy(logits.float(), torch.zeros(len(q), dtype=torch.long, device=q.device))


class MoCoV2Config(MethodConfig):
    """MoCo v2: momentum key encoder, a queue of negative keys, InfoNCE."""

    family: ClassVar[str] = "contrastive"
    name: Literal["moco-v2"] = "moco-v2"
    temperature: float = Field(0.2, gt=0)  # paper: 0.2
    queue_size: int = Field(4096, gt=0)  # paper: 65536 (ImageNet); kept well below the training split here
    momentum: float = Field(0.99, ge=0, le=1)  # paper: 0.999 (200 epochs); 0.999**200 keeps 82% of the init
    hidden_dim: int = Field(512, gt=0)  # paper: 2048
    projection_dim: int = Field(128, gt=0)


@METHODS.register("moco-v2")
class MoCoV2(PretrainMethod):
    config = MoCoV2Config

    def __init__(
        self, config: dict[str, Any], modalities: list[dict[str, Any]], stats: dict[str, dict[str, list[float]]]
    ) -> None:
        super().__init__(config, modalities, stats)
        hp = self.hp
        self.projection = MoCoProjectionHead(self.num_features, hp["hidden_dim"], hp["projection_dim"])
        self.momentum_encoder, self.momentum_projection = self.momentum_copy(self.encoder, self.projection)
        self.register_buffer("queue", F.normalize(torch.randn(hp["queue_size"], hp["projection_dim"]), dim=1))
        self.register_buffer("queue_pointer", torch.zeros((), dtype=torch.long))

    def enqueue(self, keys: torch.Tensor) -> None:
        """Replace the oldest keys of the queue (a ring buffer) with this batch's keys, those of every
        process under DDP (so the queue stays identical on all of them)."""
        ring_enqueue(self.queue, self.queue_pointer, gather_keys(keys))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x_q, x_k = self.views(batch)
        q = F.normalize(self.projection(self.encoder(x_q)), dim=1)
        self.ema(
            [(self.encoder, self.momentum_encoder), (self.projection, self.momentum_projection)], self.hp["momentum"]
        )
        with torch.no_grad():
            k = F.normalize(self.momentum_projection(self.momentum_encoder(x_k)), dim=1)
        loss = info_nce(q, k, self.queue.clone(), self.hp["temperature"])
        self.enqueue(k)
        self.log_loss(loss)
        return loss


def contrastive_loss(q: torch.Tensor, k: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo v3's in-batch InfoNCE: the key of the same image is the positive, other keys are negatives.

    Under DDP the keys (no gradient) are those of every process, so the negatives are the global batch.
    """
    q, k = F.normalize(q.float(), dim=1), F.normalize(gather_keys(k.float()), dim=1)
    logits = q @ k.T / temperature
    return 2 * temperature * F.cross_entropy(logits, key_labels(len(q), q.device))


class MoCoV3Config(MethodConfig):
    """MoCo v3: query encoder + projector + predictor, momentum key encoder, symmetric in-batch InfoNCE."""

    family: ClassVar[str] = "contrastive"
    name: Literal["moco-v3"] = "moco-v3"
    temperature: float = Field(0.2, gt=0)  # paper: 0.2 (ViT), 1.0 (ResNet-50)
    momentum_start: float = Field(0.99, ge=0, le=1)  # paper: 0.99 -> 1 (cosine)
    momentum_end: float = Field(1.0, ge=0, le=1)
    hidden_dim: int = Field(1024, gt=0)  # paper: 4096
    projection_dim: int = Field(256, gt=0)


@METHODS.register("moco-v3")
class MoCoV3(PretrainMethod):
    config = MoCoV3Config

    def __init__(
        self, config: dict[str, Any], modalities: list[dict[str, Any]], stats: dict[str, dict[str, list[float]]]
    ) -> None:
        super().__init__(config, modalities, stats)
        hp = self.hp
        hidden, dim = hp["hidden_dim"], hp["projection_dim"]
        self.projection = MoCoProjectionHead(self.num_features, hidden, dim, num_layers=3, batch_norm=True)
        self.prediction = MoCoProjectionHead(dim, hidden, dim, num_layers=2, batch_norm=True)
        self.momentum_encoder, self.momentum_projection = self.momentum_copy(self.encoder, self.projection)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x1, x2 = self.views(batch)
        momentum = self.cosine(self.hp["momentum_start"], self.hp["momentum_end"])
        self.ema([(self.encoder, self.momentum_encoder), (self.projection, self.momentum_projection)], momentum)
        q1, q2 = self.prediction(self.projection(self.encoder(torch.cat([x1, x2])))).chunk(2)
        with torch.no_grad():
            k1, k2 = self.momentum_projection(self.momentum_encoder(torch.cat([x1, x2]))).chunk(2)
        t = self.hp["temperature"]
        loss = contrastive_loss(q1, k2, t) + contrastive_loss(q2, k1, t)
        self.log_loss(loss, momentum=momentum)
        return loss
