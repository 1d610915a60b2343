"""Pixel regression: one value per pixel (e.g. tree-cover density, canopy height); a decoder with one
output, MSE over the labelled (finite) pixels, R², RMSE and MAE over them."""

from __future__ import annotations

import torch
from torch import nn

from eossl.evaluation.metrics import pixel_regression_metrics
from eossl.evaluation.registry import TASK_KINDS
from eossl.evaluation.tasks.regression import Regression


class MaskedMSELoss(nn.Module):
    """Mean squared error over the pixels whose target is finite (NaN: no label)."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        labelled = torch.isfinite(target)
        if bool(labelled.all()):
            return nn.functional.mse_loss(pred, target)
        return nn.functional.mse_loss(pred[labelled], target[labelled])


@TASK_KINDS.register("pixel-regression")
class PixelRegression(Regression):
    order = 4
    dense = True
    linear = None

    def loss(self, ignore_index: int | None = None) -> nn.Module:
        return MaskedMSELoss()

    def metrics(
        self, outputs: torch.Tensor, targets: torch.Tensor, num_classes: int, ignore_index: int | None = None
    ) -> dict[str, float]:
        return pixel_regression_metrics(outputs, targets)
