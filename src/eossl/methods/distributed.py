"""Cross-process helpers for pretraining under Lightning's DDP (one process per device).

Everything here is a no-op in a single process (``torch.distributed`` not initialised, or a world of
one), so methods call it unconditionally. Losses with in-batch negatives or batch statistics use
lightly's own ``gather_distributed`` switches (they gather with gradient, :func:`lightly.utils.dist.gather`);
what is gathered here without gradient are keys of momentum encoders (MoCo's queue and in-batch keys).

``trainer.sync_batchnorm`` on GPUs is Lightning's (torch's ``SyncBatchNorm``, CUDA only); on CPU (gloo)
it is :class:`GatheredSyncBatchNorm`, which puts :class:`GatheredBatchNorm` in place of every BatchNorm.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from lightly.utils import dist as lightly_dist
from lightning.pytorch.plugins.layer_sync import LayerSync
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def world_size() -> int:
    """Processes in the run (1 when ``torch.distributed`` is not initialised)."""
    return lightly_dist.world_size()


def rank() -> int:
    """This process's global rank (0 when ``torch.distributed`` is not initialised)."""
    return lightly_dist.rank()


def is_distributed() -> bool:
    """Whether this process is one of several of a run."""
    return world_size() > 1


@torch.no_grad()
def gather_keys(keys: torch.Tensor) -> torch.Tensor:
    """``keys`` ``[N, D]`` of every process concatenated in rank order, ``[N * world_size, D]``, no gradient.

    MoCo's ``concat_all_gather``: every process gets the same tensor, so a queue filled from it stays
    identical on all processes. Every process must pass the same ``N``.
    """
    if not is_distributed():
        return keys
    parts = [torch.empty_like(keys) for _ in range(world_size())]
    dist.all_gather(parts, keys.contiguous())
    return torch.cat(parts)


def key_labels(count: int, device: torch.device) -> torch.Tensor:
    """The positions of this process's ``count`` keys in :func:`gather_keys`'s output (the InfoNCE targets)."""
    return torch.arange(count, device=device) + rank() * count


class GatheredBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are those of the global batch, on any device (CPU/gloo too).

    In training mode under DDP the input of every process is gathered with gradient
    (:func:`lightly.utils.dist.gather`) and its per-channel mean and (biased) variance normalise this
    process's rows, exactly as one process with the whole batch would; running statistics are updated
    from the same global moments (unbiased variance), so they stay identical on all processes. Otherwise
    (eval mode, one process) it is the plain BatchNorm. Costs one all-gather of the layer's input.
    """

    original: type[_BatchNorm] = nn.BatchNorm2d  # the class it replaced, restored by revert

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (got {input.dim()}-D)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        everything = torch.cat(lightly_dist.gather(input.contiguous()))
        mean = everything.mean(dim=dims)
        var = everything.var(dim=dims, unbiased=False)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                count = everything.numel() / everything.shape[1]
                unbiased = var * count / max(count - 1, 1)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        shape = [1, -1] + [1] * (input.dim() - 2)
        out = (input - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def _swap_batchnorm(module: nn.Module, make: Any) -> nn.Module:
    """``module`` with every BatchNorm ``b`` below it replaced by ``make(b)`` (or the same one when None)."""
    replacement = make(module) if isinstance(module, _BatchNorm) else None
    if replacement is not None:
        replacement.load_state_dict(module.state_dict())
        replacement.train(module.training)
        for p_new, p_old in zip(replacement.parameters(), module.parameters(), strict=True):
            p_new.requires_grad_(p_old.requires_grad)
        module = replacement
    for name, child in module.named_children():
        module.add_module(name, _swap_batchnorm(child, make))
    return module


def _like(source: _BatchNorm, cls: type[_BatchNorm]) -> _BatchNorm:
    layer = cls(source.num_features, source.eps, source.momentum, source.affine, source.track_running_stats)
    ref = source.weight if source.affine else source.running_mean
    return layer.to(ref.device) if ref is not None else layer


class GatheredSyncBatchNorm(LayerSync):
    """Lightning plugin: every BatchNorm (momentum copies included) becomes a :class:`GatheredBatchNorm`."""

    def apply(self, model: nn.Module) -> nn.Module:
        def make(bn: _BatchNorm) -> _BatchNorm | None:
            if isinstance(bn, (GatheredBatchNorm, nn.SyncBatchNorm)):
                return None
            layer = _like(bn, GatheredBatchNorm)
            layer.original = type(bn)
            return layer

        return _swap_batchnorm(model, make)

    def revert(self, model: nn.Module) -> nn.Module:
        return _swap_batchnorm(model, lambda bn: _like(bn, bn.original) if isinstance(bn, GatheredBatchNorm) else None)


__all__ = [
    "GatheredBatchNorm",
    "GatheredSyncBatchNorm",
    "gather_keys",
    "is_distributed",
    "key_labels",
    "rank",
    "world_size",
]
