"""``fpn``: a light segmentation decoder over any encoder's feature pyramid (eossl's first decoder).

Every :class:`~eossl.models.interface.Encoder` gives its feature pyramid (timm's ``forward_intermediates``
for ResNets and ViTs alike; ViT tokens come back as ``[B, C, H/p, W/p]`` grids), so one decoder serves
all layouts as they are. The design is an FPN-style sum: each level is projected by a 1x1 convolution,
resized to the finest level, summed, refined by a 3x3 convolution and classified per pixel, then
upsampled to the input size. Also the pyramid helpers (:func:`feature_pyramid`, ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from eossl.models.decoders._base import DECODERS, DecoderSpec
from eossl.models.interface import Encoder


def feature_pyramid(encoder: Encoder, x: torch.Tensor) -> list[torch.Tensor]:
    """Feature maps of every level of ``encoder`` (finest first for CNNs)."""
    return encoder.forward_pyramid(x)


def pyramid_and_pooled(encoder: Encoder, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The feature pyramid and the pooled features of ``x``, from one pass where the encoder allows it."""
    return encoder.forward_pyramid_and_pooled(x)


class PyramidDecoder(nn.Module):
    """Sum of 1x1-projected pyramid levels at the finest resolution, 3x3 refinement, per-pixel classifier."""

    def __init__(self, channels: list[int], num_outputs: int, width: int = 64) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, kernel_size=1) for c in channels)
        self.refine = nn.Sequential(
            nn.Conv2d(width, width, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        self.classifier = nn.Conv2d(width, num_outputs, kernel_size=1)

    def forward(self, features: list[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        size = max((f.shape[-2:] for f in features), key=lambda s: s[0] * s[1])
        fused = sum(
            F.interpolate(lateral(f), size=size, mode="bilinear", align_corners=False) if f.shape[-2:] != size
            else lateral(f)
            for lateral, f in zip(self.lateral, features, strict=True)
        )  # fmt: skip
        logits = self.classifier(self.refine(fused))
        return F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)


@DECODERS.register("fpn")
class FPNDecoder(PyramidDecoder):
    """:class:`PyramidDecoder` built from a :class:`~eossl.models.decoders.DecoderSpec` (``width``: the
    channels of the projected levels)."""

    def __init__(self, spec: DecoderSpec, width: int = 64) -> None:
        super().__init__(list(spec.channels), spec.num_outputs, width)
        self.spec = spec


def pyramid_channels(encoder: Encoder, size: int) -> list[int]:
    """Channel count of each pyramid level for ``size`` inputs."""
    return encoder.feature_channels(size)
