"""Semantic segmentation: a class per pixel; a decoder on the feature pyramid, cross-entropy, mIoU."""

from __future__ import annotations

import torch
from torch import nn

from eossl.evaluation.metrics import segmentation_metrics
from eossl.evaluation.registry import TASK_KINDS
from eossl.evaluation.tasks._base import TaskKind


@TASK_KINDS.register("segmentation")
class Segmentation(TaskKind):
    order = 2
    primary = "mIoU"
    dense = True
    stratify = "presence"

    def loss(self, ignore_index: int | None = None) -> nn.Module:
        return nn.CrossEntropyLoss() if ignore_index is None else nn.CrossEntropyLoss(ignore_index=ignore_index)

    def metrics(
        self, outputs: torch.Tensor, targets: torch.Tensor, num_classes: int, ignore_index: int | None = None
    ) -> dict[str, float]:
        return segmentation_metrics(outputs, targets, num_classes, ignore_index)
