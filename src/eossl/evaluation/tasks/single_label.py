"""Single-label classification: one class per sample; softmax head, cross-entropy, accuracy."""

from __future__ import annotations

import torch
from torch import nn

from eossl.evaluation.metrics import single_label_metrics
from eossl.evaluation.registry import TASK_KINDS
from eossl.evaluation.tasks._base import TaskKind


@TASK_KINDS.register("single-label")
class SingleLabel(TaskKind):
    order = 0
    primary = "accuracy"
    linear = "classification"
    stratify = "class"

    def loss(self, ignore_index: int | None = None) -> nn.Module:
        return nn.CrossEntropyLoss()

    def metrics(
        self, outputs: torch.Tensor, targets: torch.Tensor, num_classes: int, ignore_index: int | None = None
    ) -> dict[str, float]:
        return single_label_metrics(outputs, targets, num_classes)
