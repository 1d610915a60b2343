"""Multi-scale pyramids for the smp decoders: CNN pyramids as they are, ViT grids through a simple
feature pyramid (ViTDet, Li et al. 2022).

A ViT gives every block's tokens as a grid at one reduction ``p`` (the patch size). The simple
feature pyramid turns grids into four scales: ``p/4`` (two 2x2 transposed convolutions), ``p/2``
(one), ``p`` (identity) and ``2p`` (2x2 max-pool), with ``C/4``, ``C/2``, ``C`` and ``C`` channels as in
ViTDet. The four scales are taken from four blocks spread over the depth (the last of each quarter,
blocks 3, 6, 9 and 12 of a 12-block ViT, as BEiT/mmseg's UPerNet over ViT), not only from the last
one; scales finer than the input (``p/4 < 1``) are left out.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from eossl.errors import EncoderError
from eossl.models.decoders._base import DecoderSpec


def spread_levels(num_levels: int, count: int = 4) -> list[int]:
    """Indices of ``count`` levels spread over ``num_levels`` (the last of each of ``count`` equal parts)."""
    return [max(0, math.ceil((i + 1) * num_levels / count) - 1) for i in range(count)]


def _deconv(in_channels: int, out_channels: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's simple feature pyramid over grids of ``channels`` at ``reduction``: reductions
    ``reduction / 4, / 2, x 1, x 2`` (those >= 1), each from its own one of ``num_levels`` input levels."""

    def __init__(self, channels: int, reduction: float, num_levels: int) -> None:
        super().__init__()
        half, quarter = max(1, channels // 2), max(1, channels // 4)
        scales = [
            (0.25, quarter, nn.Sequential(_deconv(channels, half), nn.BatchNorm2d(half), nn.GELU(),
                                          _deconv(half, quarter))),
            (0.5, half, _deconv(channels, half)),
            (1.0, channels, nn.Identity()),
            (2.0, channels, nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)),
        ]  # fmt: skip
        sources = spread_levels(num_levels, len(scales))
        kept = [(source, *scale) for source, scale in zip(sources, scales, strict=True) if reduction * scale[0] >= 1]
        self.sources = [source for source, *_ in kept]
        self.reductions = tuple(reduction * factor for _, factor, _, _ in kept)
        self.channels = tuple(c for _, _, c, _ in kept)
        self.scales = nn.ModuleList(module for *_, module in kept)

    def keep(self, indices: list[int]) -> None:
        """Build only the scales at ``indices`` (of those above): a decoder's unused scales get no weights."""
        self.sources = [self.sources[i] for i in indices]
        self.reductions = tuple(self.reductions[i] for i in indices)
        self.channels = tuple(self.channels[i] for i in indices)
        self.scales = nn.ModuleList(self.scales[i] for i in indices)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [scale(features[source]) for source, scale in zip(self.sources, self.scales, strict=True)]


class MultiScale(nn.Module):
    """The multi-scale pyramid of ``spec``: a CNN's (or Swin's) levels unchanged; single-scale (ViT)
    grids through :class:`SimpleFeaturePyramid`. ``channels`` and ``reductions`` describe what it gives;
    :meth:`keep` narrows it to the levels a decoder reads."""

    def __init__(self, spec: DecoderSpec) -> None:
        super().__init__()
        self.neck: SimpleFeaturePyramid | None = None
        if spec.single_scale and spec.reductions[0] > 1:
            if len(set(spec.channels)) != 1:
                raise EncoderError(f"single-scale levels of different widths {spec.channels} are not supported")
            self.neck = SimpleFeaturePyramid(spec.channels[-1], spec.reductions[-1], len(spec.channels))
            self.channels, self.reductions = self.neck.channels, self.neck.reductions
        else:
            self.channels, self.reductions = spec.channels, spec.reductions
        self.levels = list(range(len(self.channels)))

    def keep(self, indices: list[int]) -> None:
        """Give only the levels at ``indices`` (of ``channels``/``reductions``), in that order."""
        if self.neck is not None:
            self.neck.keep(indices)
        self.levels = [self.levels[i] for i in indices]
        self.channels = tuple(self.channels[i] for i in indices)
        self.reductions = tuple(self.reductions[i] for i in indices)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.neck is not None:
            return self.neck(features)
        return [features[i] for i in self.levels]
