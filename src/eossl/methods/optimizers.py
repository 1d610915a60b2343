"""Optimisers of pretraining, by name (``optim.optimizer``): builders ``(param_groups, lr) -> Optimizer``.

Adding one is one more registered function here; the config's choices are read from :data:`OPTIMIZERS`.
"""

from __future__ import annotations

from typing import Any

import torch

from eossl.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")


@OPTIMIZERS.register("adamw")
def adamw(groups: list[dict[str, Any]], lr: float) -> torch.optim.Optimizer:
    # fused: one kernel per step instead of a dozen elementwise passes over every parameter (CPU and CUDA)
    return torch.optim.AdamW(groups, lr=lr, fused=True)


@OPTIMIZERS.register("sgd")
def sgd(groups: list[dict[str, Any]], lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=lr, momentum=0.9)


@OPTIMIZERS.register("lars")
def lars(groups: list[dict[str, Any]], lr: float) -> torch.optim.Optimizer:
    from lightly.utils.lars import LARS

    return LARS(groups, lr=lr, momentum=0.9)


__all__ = ["OPTIMIZERS"]
