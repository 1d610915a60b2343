"""Semantic segmentation: a class per pixel; a decoder on the feature pyramid, cross-entropy (optionally
boundary-weighted), overall accuracy, per-class and mean IoU, boundary F1."""

from __future__ import annotations

import torch
from torch import nn

from eossl.evaluation.dense_losses import BoundaryWeightedCrossEntropy
from eossl.evaluation.metrics import boundary_f1, per_class_iou, segmentation_metrics
from eossl.evaluation.registry import TASK_KINDS
from eossl.evaluation.tasks._base import TaskKind


@TASK_KINDS.register("segmentation")
class Segmentation(TaskKind):
    order = 2
    primary = "mIoU"
    dense = True
    stratify = "presence"

    def loss(self, ignore_index: int | None = None) -> nn.Module:
        if self.options.boundary_weight != 1:
            return BoundaryWeightedCrossEntropy(self.options.boundary_distance, self.options.boundary_weight,
                                                ignore_index)  # fmt: skip
        return nn.CrossEntropyLoss() if ignore_index is None else nn.CrossEntropyLoss(ignore_index=ignore_index)

    def metrics(
        self, outputs: torch.Tensor, targets: torch.Tensor, num_classes: int, ignore_index: int | None = None
    ) -> dict[str, float]:
        """Overall (pixel) accuracy, mIoU over the classes present, ``IoU/<class>`` of each present class and
        the boundary F1 at the options' tolerance."""
        scores = segmentation_metrics(outputs, targets, num_classes, ignore_index)
        predicted = outputs.argmax(1)
        iou = per_class_iou(outputs, targets, num_classes, ignore_index)
        return {
            "overall_accuracy": scores["pixel_accuracy"],
            **scores,
            "boundary_f1": boundary_f1(predicted, targets, self.options.boundary_tolerance, ignore_index),
            **{f"IoU/{name}": value for name, value in iou.items()},
        }
