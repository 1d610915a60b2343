"""Boundary-weighted cross-entropy and the dense metrics (boundary F1, change, pixel regression), by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from eossl.evaluation.dense_losses import BoundaryWeightedCrossEntropy, boundary_mask
from eossl.evaluation.metrics import (
    boundary_f1,
    change_metrics,
    per_class_iou,
    pixel_regression_metrics,
    segmentation_metrics,
)

IGNORE = 255


def split(column: int, size: int = 6) -> torch.Tensor:
    """A ``size`` x ``size`` map: class 0 left of ``column``, class 1 from it on."""
    mask = torch.zeros(size, size, dtype=torch.long)
    mask[:, column:] = 1
    return mask


def rows(*pattern: str) -> torch.Tensor:
    return torch.tensor([[c == "x" for c in row] for row in pattern])


def test_boundary_mask_by_hand():
    target = split(3)[None]
    assert torch.equal(boundary_mask(target, 1)[0], rows(*["..xx.."] * 6))
    assert torch.equal(boundary_mask(target, 2)[0], rows(*[".xxxx."] * 6))
    assert not boundary_mask(target, 0).any() and not boundary_mask(torch.zeros(1, 6, 6, dtype=torch.long), 2).any()


def test_boundary_mask_excludes_ignored_pixels():
    target = split(3)
    target[0, 2:4] = IGNORE  # the two boundary pixels of the top row carry no label
    target = target[None]
    # distance 1: the top row's other pixels see no other labelled class (its (0,2)/(0,3) are ignored)
    assert torch.equal(boundary_mask(target, 1, IGNORE)[0], rows("......", *["..xx.."] * 5))
    # distance 2: (0,1) reaches (1,3) of class 1 and (0,4) reaches (1,2) of class 0
    assert torch.equal(boundary_mask(target, 2, IGNORE)[0], rows(".x..x.", *[".xxxx."] * 5))
    # without ignore_index, 255 is one more class
    assert boundary_mask(target, 1)[0, 0].tolist() == [False, True, True, True, True, False]


@pytest.mark.parametrize("ignore_index", [None, IGNORE])
def test_weighted_cross_entropy_is_cross_entropy_at_weight_one(ignore_index):
    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    if ignore_index is not None:
        target[0, :2] = ignore_index
    plain = F.cross_entropy(logits, target, ignore_index=-100 if ignore_index is None else ignore_index)
    weighted = BoundaryWeightedCrossEntropy(distance=2, weight=1.0, ignore_index=ignore_index)(logits, target)
    assert weighted == pytest.approx(float(plain), rel=1e-6)


def test_weighted_cross_entropy_weighs_boundary_errors():
    target = split(3)[None]
    right = F.one_hot(target, 2).permute(0, 3, 1, 2).float() * 4
    logits = right.clone()
    boundary = boundary_mask(target, 1)
    logits[:, :, boundary[0]] = right[:, :, boundary[0]].flip(1)  # boundary pixels wrong, the rest right
    loss = BoundaryWeightedCrossEntropy(distance=1, weight=5.0)
    wrong_ce, right_ce = F.softplus(torch.tensor(4.0)), F.softplus(torch.tensor(-4.0))  # CE of 2 logits 4 apart
    # 12 boundary pixels at weight 5, 24 others at weight 1: normalised by the sum of weights (84)
    assert float(loss(logits, target)) == pytest.approx(float(12 * 5 * wrong_ce + 24 * right_ce) / 84, rel=1e-5)
    assert loss(logits, target) > F.cross_entropy(logits, target)
    interior_wrong = right.clone()
    interior_wrong[:, :, ~boundary[0]] = right[:, :, ~boundary[0]].flip(1)
    assert loss(interior_wrong, target) < F.cross_entropy(interior_wrong, target)
    everything_ignored = torch.full_like(target, IGNORE)
    assert float(BoundaryWeightedCrossEntropy(ignore_index=IGNORE)(logits, everything_ignored)) == 0.0


def test_boundary_f1_by_hand():
    truth = split(3)[None]
    assert boundary_f1(truth, truth) == 1.0
    shifted = split(4)[None]  # boundary pixels: truth columns 2, 3; shifted columns 3, 4
    assert boundary_f1(shifted, truth, tolerance=0) == pytest.approx(0.5)  # column 3 matches: P = R = 1/2
    assert boundary_f1(shifted, truth, tolerance=1) == 1.0
    # an image with no boundary in either map is not scored; one with a missed boundary scores 0
    uniform = torch.zeros(1, 6, 6, dtype=torch.long)
    assert boundary_f1(torch.cat([shifted, uniform]), torch.cat([truth, uniform]), tolerance=0) == pytest.approx(0.5)
    assert boundary_f1(torch.cat([shifted, uniform]), torch.cat([truth, truth]), tolerance=0) == pytest.approx(0.25)
    assert boundary_f1(uniform, uniform) == 1.0
    # logits are turned into classes; boundaries with ignored pixels do not count
    logits = F.one_hot(shifted, 2).permute(0, 3, 1, 2).float()
    assert boundary_f1(logits, truth, tolerance=0) == pytest.approx(0.5)
    ignored = truth.clone()
    ignored[:, :, 2:5] = IGNORE  # every boundary pixel of both maps is unlabelled
    assert boundary_f1(shifted, ignored, tolerance=0, ignore_index=IGNORE) == 1.0


def test_change_metrics_by_hand():
    target = torch.tensor([[[1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]])
    pred = torch.tensor([[[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]])  # TP 3, FN 1, FP 2, TN 10
    expected = {"f1": 6 / 9, "precision": 3 / 5, "recall": 3 / 4, "iou": 3 / 6, "overall_accuracy": 13 / 16}
    two_logits = F.one_hot(pred, 2).permute(0, 3, 1, 2).float()
    one_logit = (pred.float() * 2 - 1)[:, None]
    probabilities = (pred.float() * 0.8 + 0.1)[:, None]
    for outputs, kwargs in [(two_logits, {}), (one_logit, {}), (probabilities, {"probabilities": True}), (pred, {})]:
        assert change_metrics(outputs, target, **kwargs) == pytest.approx(expected)
    ignored = target.clone()
    ignored[0, 1, 0] = IGNORE  # one false positive and one true negative
    ignored[0, 3, 3] = IGNORE
    expected = {"f1": 6 / 8, "precision": 3 / 4, "recall": 3 / 4, "iou": 3 / 5, "overall_accuracy": 12 / 14}
    assert change_metrics(two_logits, ignored, IGNORE) == pytest.approx(expected)


def test_change_metrics_zero_division_is_zero():
    nothing = torch.zeros(2, 4, 4, dtype=torch.long)
    m = change_metrics(F.one_hot(nothing, 2).permute(0, 3, 1, 2).float(), nothing)
    assert m == {"f1": 0.0, "precision": 0.0, "recall": 0.0, "iou": 0.0, "overall_accuracy": 1.0}


def test_pixel_regression_metrics_ignore_nan_targets():
    target = torch.tensor([[[1.0, math.nan], [3.0, 6.0]]])
    pred = torch.tensor([[[[1.0, 100.0], [3.0, 4.0]]]])  # [N, 1, H, W]; residuals 0, 0, -2 on labelled pixels
    m = pixel_regression_metrics(pred, target)
    # mean of (1, 3, 6) is 10/3: sum of squares (49 + 1 + 64) / 9
    assert m["rmse"] == pytest.approx(math.sqrt(4 / 3)) and m["mae"] == pytest.approx(2 / 3)
    assert m["r2"] == pytest.approx(1 - 4 / (114 / 9))
    assert pixel_regression_metrics(pred[:, 0], target) == pytest.approx(m)
    assert all(math.isnan(v) for v in pixel_regression_metrics(pred, torch.full_like(target, math.nan)).values())


def test_overall_accuracy_and_per_class_iou():
    truth = torch.tensor([[[0, 0], [1, 2]]])
    pred = torch.tensor([[[0, 1], [1, 2]]])
    logits = F.one_hot(pred, 4).permute(0, 3, 1, 2).float()
    m = segmentation_metrics(logits, truth, 4)
    assert m["overall_accuracy"] == m["pixel_accuracy"] == pytest.approx(0.75)
    iou = per_class_iou(logits, truth, 4)
    assert iou == pytest.approx({0: 0.5, 1: 0.5, 2: 1.0})  # class 3 is absent
    assert sum(iou.values()) / len(iou) == pytest.approx(m["mIoU"])
    ignored = truth.clone()
    ignored[0, 0, 1] = IGNORE  # the one error
    assert per_class_iou(logits, ignored, 4, IGNORE) == pytest.approx({0: 1.0, 1: 1.0, 2: 1.0})
