"""Metrics per task kind, from model outputs and targets (torchmetrics)."""

from __future__ import annotations

import warnings

import torch
from torchmetrics.functional import mean_absolute_error, mean_squared_error, r2_score
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_f1_score,
    multiclass_jaccard_index,
    multilabel_average_precision,
    multilabel_f1_score,
)


def _pad_classes(logits: torch.Tensor, num_classes: int) -> torch.Tensor:
    """A head trained on fewer classes than exist never predicts the missing ones."""
    if logits.shape[1] >= num_classes:
        return logits
    pad_shape = (logits.shape[0], num_classes - logits.shape[1], *logits.shape[2:])
    return torch.cat([logits, logits.new_full(pad_shape, -1e9)], dim=1)


def single_label_metrics(logits: torch.Tensor, targets: torch.Tensor, num_classes: int) -> dict[str, float]:
    """Overall accuracy and macro F1 over the classes present in ``targets``."""
    logits = _pad_classes(logits.float(), num_classes)
    present = torch.bincount(targets, minlength=num_classes) > 0
    f1 = multiclass_f1_score(logits, targets, num_classes, average="none")
    return {
        "accuracy": float(multiclass_accuracy(logits, targets, num_classes, average="micro")),
        "macro_f1": float(f1[present].mean()),
    }


def multi_label_metrics(logits: torch.Tensor, targets: torch.Tensor, num_classes: int) -> dict[str, float]:
    """Micro/macro F1 (threshold 0.5) and macro mAP over the classes present in ``targets``."""
    targets = targets.long()
    present = targets.sum(0) > 0
    probs = logits.float().sigmoid()
    # per class over all classes, then the present ones (a test split may hold a single class)
    f1 = multilabel_f1_score(probs, targets, num_classes, average="none")[present]
    with warnings.catch_warnings():  # absent classes have no positives: their AP is undefined, and dropped
        warnings.simplefilter("ignore", UserWarning)
        ap = multilabel_average_precision(probs, targets, num_classes, average="none")[present]
    return {
        "micro_f1": float(multilabel_f1_score(probs, targets, num_classes, average="micro")),
        "macro_f1": float(f1.mean()),
        "mAP": float(ap.mean()),
    }


def segmentation_metrics(
    logits: torch.Tensor, targets: torch.Tensor, num_classes: int, ignore_index: int | None = None
) -> dict[str, float]:
    """Pixel accuracy and mIoU (mean over the classes present in ``targets``) of ``[N, K, H, W]`` logits;
    pixels labelled ``ignore_index`` count for neither."""
    logits = _pad_classes(logits.float(), num_classes)
    pred = logits.argmax(1)
    if ignore_index is not None:
        keep = targets != ignore_index
        pred, targets = pred[keep], targets[keep]
    present = torch.bincount(targets.flatten(), minlength=num_classes) > 0
    iou = multiclass_jaccard_index(pred, targets, num_classes, average="none")
    return {"pixel_accuracy": float((pred == targets).float().mean()), "mIoU": float(iou[present].mean())}


def regression_metrics(pred: torch.Tensor, targets: torch.Tensor, num_classes: int = 0) -> dict[str, float]:
    """R², RMSE and MAE of a scalar target (``pred`` may be ``[N]`` or ``[N, 1]``)."""
    pred, targets = pred.float().reshape(-1), targets.float().reshape(-1)
    return {
        "r2": float(r2_score(pred, targets)),
        "rmse": float(mean_squared_error(pred, targets, squared=False)),
        "mae": float(mean_absolute_error(pred, targets)),
    }
