"""Losses of dense (per-pixel) tasks: boundary-weighted cross-entropy.

Fine structures (field edges, roads, hedges) are few pixels of a mask, so their errors are diluted in
a plain pixel-averaged cross-entropy; weighting the pixels near a class boundary higher puts them
back in the loss. Boundaries are found with max-pool dilation (torch only, on the batch's device).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def dilate(mask: torch.Tensor, distance: int) -> torch.Tensor:
    """``mask`` ``[N, H, W]`` (bool) grown by ``distance`` pixels (Chebyshev: a (2d+1)-square max-pool)."""
    if distance <= 0:
        return mask.bool()
    grown = F.max_pool2d(mask[:, None].float(), kernel_size=2 * distance + 1, stride=1, padding=distance)
    return grown[:, 0] > 0


def class_boundaries(labels: torch.Tensor, labelled: torch.Tensor, distance: int = 1) -> torch.Tensor:
    """Bool ``[N, H, W]``: labelled pixels of ``labels`` ``[N, H, W]`` with a labelled pixel of another
    class within ``distance`` pixels (Chebyshev). Unlabelled pixels (``labelled`` False) are never
    boundaries and never make one; outside the image is nothing (image borders are not boundaries)."""
    if labels.dim() != 3:
        raise ValueError(f"labels must be [N, H, W], got shape {tuple(labels.shape)}")
    if distance <= 0:
        return torch.zeros_like(labels, dtype=torch.bool)
    values = labels.float()[:, None]
    keep = labelled.bool()[:, None]
    kernel = {"kernel_size": 2 * distance + 1, "stride": 1, "padding": distance}  # max-pool pads with -inf
    highest = F.max_pool2d(torch.where(keep, values, -torch.inf), **kernel)
    lowest = -F.max_pool2d(torch.where(keep, -values, -torch.inf), **kernel)
    return (((highest > values) | (lowest < values)) & keep)[:, 0]


def labelled_pixels(target: torch.Tensor, ignore_index: int | None = None) -> torch.Tensor:
    """Bool mask of the pixels of ``target`` that carry a label (all of them when ``ignore_index`` is None)."""
    if ignore_index is None:
        return torch.ones_like(target, dtype=torch.bool)
    return target != ignore_index


def boundary_mask(target: torch.Tensor, distance: int = 2, ignore_index: int | None = None) -> torch.Tensor:
    """Bool ``[N, H, W]``: pixels of the class map ``target`` ``[N, H, W]`` with a pixel of a different,
    non-ignored class within ``distance`` pixels (Chebyshev distance, by max-pool dilation). Both sides
    of an edge are boundary pixels; ``ignore_index`` pixels are never boundaries and never make one;
    image borders are not boundaries."""
    return class_boundaries(target, labelled_pixels(target, ignore_index), distance)


class BoundaryWeightedCrossEntropy(nn.Module):
    """Per-pixel cross-entropy where pixels within ``distance`` of a class boundary of the target
    (:func:`boundary_mask`) weigh ``weight`` and the others 1.

    The loss is the weighted mean over labelled pixels: ``sum(w * ce) / sum(w)`` with
    ``w = 1 + (weight - 1) * boundary`` (0 on ``ignore_index`` pixels), i.e. normalised by the sum of the
    weights, so its scale does not depend on how many boundary pixels a batch holds and at ``weight``
    1 it equals :class:`torch.nn.CrossEntropyLoss` (mean over labelled pixels). A batch without
    labelled pixels gives 0.
    """

    def __init__(self, distance: int = 2, weight: float = 5.0, ignore_index: int | None = None) -> None:
        super().__init__()
        if distance < 0 or weight < 0:
            raise ValueError(f"boundary distance and weight must be >= 0, got {distance} and {weight}")
        self.distance, self.weight, self.ignore_index = int(distance), float(weight), ignore_index

    def pixel_weights(self, target: torch.Tensor) -> torch.Tensor:
        """The weight of each pixel of ``target`` ``[N, H, W]`` (0 where unlabelled)."""
        labelled = labelled_pixels(target, self.ignore_index)
        boundary = class_boundaries(target, labelled, self.distance)
        return labelled.float() * (1.0 + (self.weight - 1.0) * boundary.float())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ignore = -100 if self.ignore_index is None else self.ignore_index
        pixel_loss = F.cross_entropy(logits, target, reduction="none", ignore_index=ignore)
        weights = self.pixel_weights(target).to(pixel_loss.dtype)
        total = weights.sum()
        if total <= 0:
            return pixel_loss.sum() * 0.0
        return (pixel_loss * weights).sum() / total

    def extra_repr(self) -> str:
        return f"distance={self.distance}, weight={self.weight}, ignore_index={self.ignore_index}"
