"""Linear probe on cached features: a full-batch L-BFGS fit with a validated weight-decay sweep."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class LinearProbe:
    """A fitted linear classifier on standardised features."""

    mean: torch.Tensor
    std: torch.Tensor
    layer: nn.Linear
    weight_decay: float

    @torch.no_grad()
    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.layer((features.float() - self.mean) / self.std)


def fit_linear(
    features: torch.Tensor, targets: torch.Tensor, multilabel: bool, weight_decay: float, max_iter: int = 200
) -> LinearProbe:
    """Fit logistic regression (softmax or per-class sigmoid) to convergence with L-BFGS."""
    features = features.double()
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    x = (features - mean) / std
    num_outputs = targets.shape[1] if multilabel else int(targets.max()) + 1
    layer = nn.Linear(x.shape[1], num_outputs).double()
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    loss_fn = nn.BCEWithLogitsLoss() if multilabel else nn.CrossEntropyLoss()
    y = targets.double() if multilabel else targets.long()
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
    return LinearProbe(mean=mean.float(), std=std.float(), layer=layer.float(), weight_decay=weight_decay)
