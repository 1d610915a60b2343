"""Multi-label classification: a 0/1 vector of classes present per sample; sigmoid head, BCE, mAP."""

from __future__ import annotations

import torch
from torch import nn

from eossl.evaluation.metrics import multi_label_metrics
from eossl.evaluation.registry import TASK_KINDS
from eossl.evaluation.tasks._base import TaskKind


@TASK_KINDS.register("multi-label")
class MultiLabel(TaskKind):
    order = 1
    primary = "mAP"
    linear = "multilabel"
    stratify = "presence"

    def loss(self, ignore_index: int | None = None) -> nn.Module:
        return nn.BCEWithLogitsLoss()

    def metrics(
        self, outputs: torch.Tensor, targets: torch.Tensor, num_classes: int, ignore_index: int | None = None
    ) -> dict[str, float]:
        return multi_label_metrics(outputs, targets, num_classes)

    def prepare_target(self, target: torch.Tensor) -> torch.Tensor:
        return target.float()

    def knn_logits(self, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.clamp(1e-6, 1 - 1e-6)
        return (scores / (1 - scores)).log()
