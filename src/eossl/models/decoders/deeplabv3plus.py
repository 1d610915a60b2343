"""``deeplabv3plus``: segmentation-models-pytorch's DeepLabV3+ decoder (Chen et al. 2018) over eossl pyramids.

smp's :class:`DeepLabV3PlusDecoder` reads two entries of its feature list: the last (ASPP on the
deepest map) and the third (the high-resolution skip, stride 4 in smp), and upsamples the ASPP
output by a fixed 4 (``output_stride`` 16) or 2 (8) before concatenating the skip. The glue picks:

- the deepest level: the pyramid's last (ResNet-18 at output stride 16: its dilated stride-16 map);
- the skip: the level finer than the deepest whose reduction is nearest 4 (log scale, ties to the
  finer): reduction 4 for ResNet-18 (both output strides), the detail ResNet and Swin; on ViT grids
  (through the simple feature pyramid, reductions p/4 ... 2p) the p/4 ... p level nearest 4;
- the factor: 4 when the deepest level is at least 4x coarser than the skip, else 2; the deepest map
  is resized (bilinear) to the skip's size divided by it, so a stride-32 map (ResNet-18 at output
  stride 32, ViT 2p) enters ASPP at stride 16, as smp's dilated encoders give it.

Then smp's :class:`SegmentationHead` (1x1 conv, as smp's DeepLabV3+) and bilinear upsampling to the
input size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from segmentation_models_pytorch.base import SegmentationHead
from segmentation_models_pytorch.decoders.deeplabv3.decoder import DeepLabV3PlusDecoder
from torch import nn

from eossl.models.decoders._base import DECODERS, DecoderSpec, placeholder, resize
from eossl.models.decoders._neck import MultiScale


def skip_level(reductions: Sequence[float], target: float = 4.0) -> int:
    """Index of the level finer than the last whose reduction is nearest ``target`` (the last if none is finer)."""
    deepest = len(reductions) - 1
    finer = [i for i in range(deepest) if reductions[i] < reductions[deepest]]
    if not finer:
        return deepest
    return min(finer, key=lambda i: (abs(math.log2(reductions[i] / target)), reductions[i]))


@DECODERS.register("deeplabv3plus")
class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ decoder: ASPP ``width`` channels wide with ``atrous_rates``, separable convolutions
    (``separable``, smp's default) and ``dropout``; the skip and factor as in the module docstring."""

    def __init__(
        self,
        spec: DecoderSpec,
        width: int = 256,
        atrous_rates: Sequence[int] = (12, 24, 36),
        separable: bool = True,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.pyramid = MultiScale(spec)
        skip, deepest = skip_level(self.pyramid.reductions), len(self.pyramid.reductions) - 1
        self.pyramid.keep([skip, deepest])  # [skip, deepest]: the two levels smp's decoder reads
        skip_channels, deep_channels = self.pyramid.channels
        self.factor = 4 if self.pyramid.reductions[1] / self.pyramid.reductions[0] >= 4 else 2
        self.decoder = DeepLabV3PlusDecoder(
            encoder_channels=[0, 0, skip_channels, deep_channels], encoder_depth=5, out_channels=width,
            atrous_rates=tuple(atrous_rates), output_stride=16 if self.factor == 4 else 8,
            aspp_separable=separable, aspp_dropout=dropout,
        )  # fmt: skip
        self.head = SegmentationHead(width, spec.num_outputs, kernel_size=1)

    def forward(self, features: list[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        skip, deepest = self.pyramid(features)
        size = [math.ceil(s / self.factor) for s in skip.shape[-2:]]
        deepest = resize(deepest, size)
        skip = resize(skip, [s * self.factor for s in size])
        empty = placeholder(skip, out_size)
        decoded = self.decoder([empty, empty, skip, deepest])
        return resize(self.head(decoded), out_size)
