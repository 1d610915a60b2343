"""Change detection: a binary change mask between two dates of one place (OSCD-style).

The input is a store *pair* (two modalities that are two dates of a place, declared with its change
target): its modalities stacked, date 1 first, fused by an early-fusion or Siamese encoder
(:mod:`eossl.models.change`; fusion modes ``early``, ``siam-diff``, ``siam-conc``). Two logits per
pixel (no change, change); the loss is cross-entropy plus the Dice loss of the change class (change
is rare: on OSCD about 3% of the pixels; Dice keeps the model from predicting "no change"
everywhere). Metrics are those of the change class over all test pixels: F1 (primary), precision,
recall and IoU, plus overall accuracy. Label fractions are drawn over places (OSCD's cities): a
fraction of the training places with all their patches, stratified by whether a place has change.
"""

from __future__ import annotations

import torch
from segmentation_models_pytorch.losses import DiceLoss
from torch import nn

from eossl.evaluation.metrics import change_metrics
from eossl.evaluation.registry import TASK_KINDS
from eossl.evaluation.tasks._base import TaskKind

CHANGE = 1


class ChangeLoss(nn.Module):
    """Cross-entropy over both classes plus the Dice loss of the change class; ignored pixels count for neither."""

    def __init__(self, ignore_index: int | None = None) -> None:
        super().__init__()
        self.cross_entropy = nn.CrossEntropyLoss() if ignore_index is None else nn.CrossEntropyLoss(
            ignore_index=ignore_index)  # fmt: skip
        self.dice = DiceLoss("multiclass", classes=[CHANGE], ignore_index=ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.cross_entropy(logits, target) + self.dice(logits, target)


@TASK_KINDS.register("change")
class Change(TaskKind):
    order = 5
    primary = "f1"
    dense = True
    pairs = True
    stratify = "places"

    def loss(self, ignore_index: int | None = None) -> nn.Module:
        return ChangeLoss(ignore_index)

    def num_outputs(self, num_classes: int) -> int:
        return 2

    def metrics(
        self, outputs: torch.Tensor, targets: torch.Tensor, num_classes: int, ignore_index: int | None = None
    ) -> dict[str, float]:
        return change_metrics(outputs, targets, ignore_index)
