"""Metrics per task kind, from model outputs and targets (torchmetrics; boundaries by max-pool dilation)."""

from __future__ import annotations

import math
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

from eossl.evaluation.dense_losses import class_boundaries, dilate, labelled_pixels


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
    """Pixel accuracy (also under its remote-sensing name ``overall_accuracy``) and mIoU (mean over the
    classes present in ``targets``) of ``[N, K, H, W]`` logits; pixels labelled ``ignore_index`` count
    for neither."""
    logits = _pad_classes(logits.float(), num_classes)
    pred = logits.argmax(1)
    if ignore_index is not None:
        keep = targets != ignore_index
        pred, targets = pred[keep], targets[keep]
    present = torch.bincount(targets.flatten(), minlength=num_classes) > 0
    iou = multiclass_jaccard_index(pred, targets, num_classes, average="none")
    accuracy = float((pred == targets).float().mean())
    return {"pixel_accuracy": accuracy, "mIoU": float(iou[present].mean()), "overall_accuracy": accuracy}


def per_class_iou(
    logits: torch.Tensor, targets: torch.Tensor, num_classes: int, ignore_index: int | None = None
) -> dict[int, float]:
    """IoU of each class present in ``targets`` (class index -> IoU; callers name them ``IoU/<index>``)
    from ``[N, K, H, W]`` logits; ``ignore_index`` pixels count for neither. Their mean is the
    ``mIoU`` of :func:`segmentation_metrics`."""
    pred = _pad_classes(logits.float(), num_classes).argmax(1)
    if ignore_index is not None:
        keep = targets != ignore_index
        pred, targets = pred[keep], targets[keep]
    present = torch.bincount(targets.flatten(), minlength=num_classes) > 0
    iou = multiclass_jaccard_index(pred, targets, num_classes, average="none")
    return {int(c): float(iou[c]) for c in torch.nonzero(present).flatten()}


def boundary_f1(pred: torch.Tensor, target: torch.Tensor, tolerance: int = 2, ignore_index: int | None = None) -> float:
    """Boundary F1 (the BF score of Csurka et al. 2013) of class maps ``pred`` and ``target`` ``[N, H, W]``
    (``pred`` may be ``[N, K, H, W]`` logits).

    Boundary pixels of a map are those with an 8-neighbour of another class (both sides of an edge,
    :func:`~eossl.evaluation.dense_losses.class_boundaries`), over the pixels labelled in ``target``
    (``ignore_index`` pixels are neither boundaries nor make one, in either map). Per image, precision
    is the fraction of predicted boundary pixels within ``tolerance`` pixels (Chebyshev) of a true
    boundary pixel, recall the fraction of true boundary pixels within ``tolerance`` of a predicted one
    (0 when the map has no boundary), F1 their harmonic mean (0 when both are 0). The result is the mean
    F1 over the images with a true or a predicted boundary; 1.0 when no image has any (they agree).
    """
    if pred.dim() == 4:
        pred = pred.argmax(1)
    if pred.shape != target.shape or target.dim() != 3:
        raise ValueError(
            f"boundary_f1 needs [N, H, W] maps of one shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    labelled = labelled_pixels(target, ignore_index)
    true_edges = class_boundaries(target, labelled)
    pred_edges = class_boundaries(pred, labelled)
    n_true, n_pred = true_edges.sum((1, 2)).double(), pred_edges.sum((1, 2)).double()
    precision = (pred_edges & dilate(true_edges, tolerance)).sum((1, 2)) / n_pred.clamp_min(1)
    recall = (true_edges & dilate(pred_edges, tolerance)).sum((1, 2)) / n_true.clamp_min(1)
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp_min(1e-12), 0.0)
    scored = (n_true > 0) | (n_pred > 0)
    return float(f1[scored].mean()) if bool(scored.any()) else 1.0


def _ratio(numerator: int, denominator: int) -> float:
    """``numerator / denominator``, 0 when the denominator is 0 (torchmetrics' ``zero_division=0``)."""
    return numerator / denominator if denominator else 0.0


def change_metrics(
    outputs: torch.Tensor, targets: torch.Tensor, ignore_index: int | None = None, probabilities: bool = False
) -> dict[str, float]:
    """F1, precision, recall and IoU of the change class (1), and overall accuracy, from global pixel
    counts over every labelled pixel of ``targets`` ``[N, H, W]`` (1 = change, other values no change,
    ``ignore_index`` not counted).

    ``outputs``: ``[N, 2, H, W]`` logits (change where class 1 has the larger one), ``[N, 1, H, W]`` (or
    float ``[N, H, W]``) logits of change (change where > 0) or, with ``probabilities``, change
    probabilities (change where > 0.5); integer or bool ``[N, H, W]``: predicted classes. A ratio whose
    denominator is 0 is 0 (torchmetrics' ``zero_division=0``): with no change predicted and none present,
    precision, recall, F1 and IoU are all 0 (overall accuracy is 1).
    """
    if outputs.dim() == 4 and outputs.shape[1] == 2:
        changed = outputs.argmax(1) == 1
    elif (outputs.dim() == 4 and outputs.shape[1] == 1) or (outputs.dim() == 3 and outputs.is_floating_point()):
        scores = outputs[:, 0] if outputs.dim() == 4 else outputs
        changed = scores > 0.5 if probabilities else scores > 0
    elif outputs.dim() == 3:
        changed = outputs.long() == 1
    else:
        raise ValueError(f"change outputs must be [N, 2, H, W], [N, 1, H, W] or [N, H, W], got {tuple(outputs.shape)}")
    if changed.shape != targets.shape:
        raise ValueError(f"change outputs {tuple(outputs.shape)} do not match targets {tuple(targets.shape)}")
    labelled = labelled_pixels(targets, ignore_index)
    truth = (targets == 1) & labelled
    changed = changed & labelled
    tp = int((changed & truth).sum())
    fp = int((changed & ~truth).sum())
    fn = int((~changed & truth).sum())
    total = int(labelled.sum())
    tn = total - tp - fp - fn
    return {
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "iou": _ratio(tp, tp + fp + fn),
        "overall_accuracy": _ratio(tp + tn, total),
    }


def regression_metrics(pred: torch.Tensor, targets: torch.Tensor, num_classes: int = 0) -> dict[str, float]:
    """R², RMSE and MAE of a scalar target (``pred`` may be ``[N]`` or ``[N, 1]``)."""
    pred, targets = pred.float().reshape(-1), targets.float().reshape(-1)
    return {
        "r2": float(r2_score(pred, targets)),
        "rmse": float(mean_squared_error(pred, targets, squared=False)),
        "mae": float(mean_absolute_error(pred, targets)),
    }


def pixel_regression_metrics(pred: torch.Tensor, targets: torch.Tensor, num_classes: int = 0) -> dict[str, float]:
    """R², RMSE and MAE over the labelled pixels: those whose target is finite (NaN means no label).

    ``pred`` ``[N, 1, H, W]`` or ``[N, H, W]``, ``targets`` the same number of pixels. With no labelled
    pixel every metric is NaN; with one, R² is NaN (undefined).
    """
    pred, targets = pred.float().reshape(-1), targets.float().reshape(-1)
    if pred.numel() != targets.numel():
        raise ValueError(f"pixel regression: {pred.numel()} predicted pixels for {targets.numel()} target pixels")
    labelled = torch.isfinite(targets)
    pred, targets = pred[labelled], targets[labelled]
    if targets.numel() == 0:
        return {"r2": math.nan, "rmse": math.nan, "mae": math.nan}
    return {
        "r2": float(r2_score(pred, targets)) if targets.numel() > 1 else math.nan,
        "rmse": float(mean_squared_error(pred, targets, squared=False)),
        "mae": float(mean_absolute_error(pred, targets)),
    }
