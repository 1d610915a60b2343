"""``upconv``: progressive upsampling from the last feature map (the "UpConv" decoder of ViT
segmentation benchmarks, e.g. SETR's progressive upsampling, Zheng et al. 2021).

From the pyramid's last level (a ViT's last token grid at reduction p; a CNN's deepest map), repeated
[2x upsampling (2x2 transposed convolution, or bilinear) + 3x3 conv-BN-ReLU] until the input
resolution (log2 of the reduction times, rounded up: 4 for patch 16), the width halving each time
from ``width`` down to ``min_width``; then a 1x1 head, resized to the input size where the reduction is
not a power of 2. ``auto`` picks it for single-scale (ViT-like) pyramids.
"""

from __future__ import annotations

from typing import Literal

import torch
from segmentation_models_pytorch.base import SegmentationHead
from torch import nn

from eossl.errors import ConfigError
from eossl.models.decoders._base import DECODERS, DecoderSpec, resize, upsampling_steps

Upsample = Literal["deconv", "bilinear"]


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True)]  # fmt: skip


def up_block(in_channels: int, out_channels: int, upsample: Upsample = "deconv") -> nn.Sequential:
    """2x upsampling + 3x3 conv-BN-ReLU: a 2x2 stride-2 transposed convolution to ``out_channels``
    (``deconv``) or bilinear upsampling with the conv doing the channel change (``bilinear``)."""
    if upsample == "deconv":
        return nn.Sequential(nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2),
                             *_conv_bn_relu(out_channels, out_channels))  # fmt: skip
    if upsample == "bilinear":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                             *_conv_bn_relu(in_channels, out_channels))  # fmt: skip
    raise ConfigError(f"decoder 'upconv': upsample must be 'deconv' or 'bilinear', got '{upsample}'")


@DECODERS.register("upconv")
class UpConv(nn.Module):
    """Progressive upsampling decoder (module docstring): ``width`` channels after the first
    upsampling, halved per step down to ``min_width``; ``upsample``: ``deconv`` or ``bilinear``."""

    def __init__(self, spec: DecoderSpec, width: int = 256, min_width: int = 32, upsample: Upsample = "deconv") -> None:
        super().__init__()
        self.spec = spec
        channels, blocks = spec.channels[-1], []
        for step in range(upsampling_steps(spec.reductions[-1])):
            out_channels = max(min_width, width // 2**step)
            blocks.append(up_block(channels, out_channels, upsample))
            channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.head = SegmentationHead(channels, spec.num_outputs, kernel_size=1)

    def forward(self, features: list[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        return resize(self.head(self.blocks(features[-1])), out_size)
