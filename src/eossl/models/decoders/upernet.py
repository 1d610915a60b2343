"""``upernet``: segmentation-models-pytorch's UPerNet decoder (Xiao et al. 2018) over eossl pyramids.

smp's :class:`UPerNetDecoder` skips the first two entries of its feature list (input and stride 2),
layer-normalises the others, runs a pyramid pooling module on the last, an FPN top-down path with
size-based upsampling over the rest and fuses every level at the first kept one's resolution. The
glue gives it the pyramid's levels from reduction 4 on, keeping at least three (finer ones are
dropped only while more than three remain; their fusion at full resolution would be costly):

- ResNet-18 at output stride 16: reductions 4, 8, 16, 16; at 32: 4, 8, 16, 32; Swin: 4, 8, 16, 32;
- the detail ResNet (1, 2, 4, 8, 16): 4, 8, 16;
- ViT grids through the simple feature pyramid (:mod:`._neck`): p/4, p/2, p, 2p (p = 16: 4, 8, 16,
  32, as ViTDet/BEiT feed UPerNet); patch 4: 2, 4, 8 (1 is finer than 4 and three remain).

Then smp's :class:`SegmentationHead` (1x1 conv, as smp's UPerNet) and bilinear upsampling to the
input size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from segmentation_models_pytorch.base import SegmentationHead
from segmentation_models_pytorch.decoders.upernet.decoder import UPerNetDecoder
from torch import nn

from eossl.models.decoders._base import DECODERS, DecoderSpec, placeholder, resize
from eossl.models.decoders._neck import MultiScale


def first_kept_level(reductions: Sequence[float], finest: float = 4.0, keep: int = 3) -> int:
    """Index of the first level UPerNet uses (finer than ``finest`` are dropped while more than ``keep`` remain)."""
    start = 0
    while len(reductions) - start > keep and reductions[start] < finest:
        start += 1
    return start


@DECODERS.register("upernet")
class UPerNet(nn.Module):
    """UPerNet decoder ``width`` channels wide (smp's ``decoder_channels``, default 256)."""

    def __init__(self, spec: DecoderSpec, width: int = 256) -> None:
        super().__init__()
        self.spec = spec
        self.pyramid = MultiScale(spec)
        start = first_kept_level(self.pyramid.reductions)
        self.pyramid.keep(list(range(start, len(self.pyramid.reductions))))
        used = list(self.pyramid.channels)
        self.decoder = UPerNetDecoder(encoder_channels=[0, 0, *used], encoder_depth=max(3, len(used) + 1),
                                      decoder_channels=width)  # fmt: skip
        self.head = SegmentationHead(width, spec.num_outputs, kernel_size=1)

    def forward(self, features: list[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        levels = self.pyramid(features)
        empty = placeholder(levels[0], out_size)
        decoded = self.decoder([empty, empty, *levels])
        return resize(self.head(decoded), out_size)
