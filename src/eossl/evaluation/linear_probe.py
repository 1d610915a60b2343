"""Linear probe on cached features: a full-batch L-BFGS fit with a validated weight-decay sweep.

Logistic regression (softmax or per-class sigmoid) for classification, ridge regression for scalar targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn


@dataclass
class LinearProbe:
    """A fitted linear classifier on standardised features."""

    mean: torch.Tensor
    std: torch.Tensor
    layer: nn.Linear
    weight_decay: float
    kind: str = "classification"

    @torch.no_grad()
    def logits(self, features: torch.Tensor) -> torch.Tensor:
        out = self.layer((features.float() - self.mean) / self.std)
        return out.squeeze(1) if self.kind == "regression" else out


def fit_linear(
    features: torch.Tensor,
    targets: torch.Tensor,
    kind: Literal["classification", "multilabel", "regression"],
    weight_decay: float,
    max_iter: int = 200,
) -> LinearProbe:
    """Fit a linear model on standardised features to convergence with L-BFGS (L2 penalty ``weight_decay``)."""
    features = features.double()
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    x = (features - mean) / std
    num_outputs = {"multilabel": targets.shape[-1], "regression": 1}.get(kind) or int(targets.max()) + 1
    layer = nn.Linear(x.shape[1], num_outputs).double()
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    loss_fn = {"multilabel": nn.BCEWithLogitsLoss(), "regression": nn.MSELoss()}.get(kind, nn.CrossEntropyLoss())
    y = targets.long() if kind == "classification" else targets.double().reshape(len(x), -1)
    optimizer = torch.optim.LBFGS(
        layer.parameters(),
        max_iter=max_iter,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
        history_size=20,
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn(layer(x), y) + weight_decay * layer.weight.pow(2).sum() / 2
        loss.backward()
        return loss

    optimizer.step(closure)
    return LinearProbe(mean.float(), std.float(), layer.float(), weight_decay, kind)
