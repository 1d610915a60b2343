"""Regression of one value per sample: a linear head, MSE, R²."""

from __future__ import annotations

import torch
from torch import nn

from eossl.evaluation.metrics import regression_metrics
from eossl.evaluation.registry import TASK_KINDS
from eossl.evaluation.tasks._base import TaskKind


@TASK_KINDS.register("regression")
class Regression(TaskKind):
    order = 3
    primary = "r2"
    classes = False
    linear = "regression"
    stratify = "bins"

    def loss(self, ignore_index: int | None = None) -> nn.Module:
        return nn.MSELoss()

    def metrics(
        self, outputs: torch.Tensor, targets: torch.Tensor, num_classes: int, ignore_index: int | None = None
    ) -> dict[str, float]:
        return regression_metrics(outputs, targets)

    def num_outputs(self, num_classes: int) -> int:
        return 1

    def prepare_target(self, target: torch.Tensor) -> torch.Tensor:
        return target.float()

    def prepare_output(self, output: torch.Tensor) -> torch.Tensor:
        return output.squeeze(1)
