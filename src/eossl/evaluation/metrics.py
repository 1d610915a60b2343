"""Metrics for the classification tasks, from logits and targets (torchmetrics)."""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_f1_score,
    multilabel_average_precision,
    multilabel_f1_score,
)

TASK_TARGET = {"single-label": "label", "multi-label": "multilabel"}


def classification_metrics(
    task: str, logits: torch.Tensor, targets: torch.Tensor, num_classes: int
) -> dict[str, float]:
    """``single-label``: overall accuracy and macro F1; ``multi-label``: micro/macro F1 (threshold 0.5) and
    macro mAP. Macro averages skip classes absent from ``targets`` (their scores are undefined)."""
    logits = logits.float()
    if task == "single-label":
        if logits.shape[1] < num_classes:  # head trained on fewer classes than exist
            pad = logits.new_full((logits.shape[0], num_classes - logits.shape[1]), -1e9)
            logits = torch.cat([logits, pad], dim=1)
        present = torch.bincount(targets, minlength=num_classes) > 0
        f1 = multiclass_f1_score(logits, targets, num_classes, average="none")
        return {
            "accuracy": float(multiclass_accuracy(logits, targets, num_classes, average="micro")),
            "macro_f1": float(f1[present].mean()),
        }
    if task == "multi-label":
        targets = targets.long()
        present = targets.sum(0) > 0
        probs = logits.sigmoid()
        f1 = multilabel_f1_score(probs[:, present], targets[:, present], int(present.sum()), average="none")
        ap = multilabel_average_precision(probs[:, present], targets[:, present], int(present.sum()), average="none")
        return {
            "micro_f1": float(multilabel_f1_score(probs, targets, num_classes, average="micro")),
            "macro_f1": float(f1.mean()),
            "mAP": float(ap.mean()),
        }
    raise ValueError(f"unknown task '{task}' (known: {', '.join(TASK_TARGET)})")
