"""A light segmentation decoder over any timm encoder's feature pyramid.

timm's ``forward_intermediates`` returns the feature maps of every stage for ResNets and ViTs alike
(ViT tokens come back as ``[B, C, H/p, W/p]`` grids), so one decoder serves both. Written here
because segmentation-models-pytorch's decoders expect its own encoder wrappers, not an arbitrary
timm model with an EO stem. The design is an FPN-style sum: each level is projected by a 1x1
convolution, resized to the finest level, summed, refined by a 3x3 convolution and classified per
pixel, then upsampled to the input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def feature_pyramid(encoder: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Feature maps of every stage of ``encoder`` (finest first for CNNs)."""
    if not hasattr(encoder, "forward_intermediates"):
        raise TypeError(f"encoder {type(encoder).__name__} has no forward_intermediates: cannot decode dense maps")
    return encoder.forward_intermediates(x, intermediates_only=True)


def pyramid_and_pooled(encoder: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The feature pyramid (as :func:`feature_pyramid`) and the pooled features (as ``encoder(x)``) of ``x``.

    One pass where the encoder allows it: timm's ``forward_intermediates(x, intermediates_only=False)``
    returns the final feature map beside the pyramid, and ``forward_head(final, pre_logits=True)`` pools
    it as ``encoder(x)`` does (the encoders have no classifier). Encoders without ``forward_head`` (the
    late-fusion wrappers of :mod:`eossl.models.fusion`, for example) take two calls instead.
    """
    if hasattr(encoder, "forward_intermediates") and hasattr(encoder, "forward_head"):
        out = encoder.forward_intermediates(x, intermediates_only=False)
        if isinstance(out, tuple) and len(out) == 2:
            final, pyramid = out
            return list(pyramid), encoder.forward_head(final, pre_logits=True)
    return feature_pyramid(encoder, x), encoder(x)


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


def pyramid_channels(encoder: nn.Module, in_chans: int, size: int) -> list[int]:
    """Channel count of each pyramid level, probed with one small forward pass."""
    was_training = encoder.training
    encoder.eval()
    with torch.no_grad():
        device = next(encoder.parameters()).device
        channels = [f.shape[1] for f in feature_pyramid(encoder, torch.zeros(1, in_chans, size, size, device=device))]
    encoder.train(was_training)
    return channels
