"""``unet``: segmentation-models-pytorch's U-Net decoder (Ronneberger et al. 2015) over eossl pyramids.

smp's :class:`UnetDecoder` takes features finest first with the input-resolution entry first; it
drops that entry (reading only its size), then from the coarsest level upsamples to each next level's
size (by size, not by a fixed factor), concatenates it as the skip and applies two 3x3 conv-BN-ReLU,
with a last block up to the input size. The glue gives it:

- CNN pyramids as they are, behind a zero-channel input-size placeholder: ResNet-18 at output stride
  16 (reductions 2, 4, 8, 16, 16; the dilated last two meet without upsampling), 32 (2 ... 32), a
  detail-preserving ResNet (1, 2, 4, 8, 16: the full-resolution map is the last skip) or Swin (4 ... 32);
- ViT grids through the simple feature pyramid (:mod:`._neck`: reductions p/4, p/2, p, 2p).

Then smp's :class:`SegmentationHead` (3x3 conv, as smp's U-Net) at the input size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from segmentation_models_pytorch.base import SegmentationHead
from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder
from torch import nn

from eossl.errors import ConfigError
from eossl.models.decoders._base import DECODERS, DecoderSpec, placeholder, resize
from eossl.models.decoders._neck import MultiScale


def default_unet_channels(blocks: int) -> tuple[int, ...]:
    """smp's decoder widths (256, 128, 64, 32, 16) for any number of blocks: 256 halved per block, at least 16."""
    return tuple(max(16, 256 // 2**i) for i in range(blocks))


@DECODERS.register("unet")
class UNet(nn.Module):
    """U-Net decoder: one block per pyramid level (``decoder_channels`` wide, coarse to fine; default
    :func:`default_unet_channels`), ``interpolation`` of smp's blocks (``nearest`` as smp, or
    ``bilinear``), optional ``attention`` (smp's ``scse``) and ``center`` block."""

    def __init__(
        self,
        spec: DecoderSpec,
        decoder_channels: Sequence[int] | None = None,
        interpolation: str = "nearest",
        attention: str | None = None,
        center: bool = False,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.pyramid = MultiScale(spec)
        blocks = len(self.pyramid.channels)
        widths = tuple(decoder_channels) if decoder_channels is not None else default_unet_channels(blocks)
        if len(widths) != blocks:
            raise ConfigError(f"decoder 'unet' needs {blocks} decoder_channels (one per pyramid level), got {widths}")
        self.decoder = UnetDecoder(
            encoder_channels=[0, *self.pyramid.channels], decoder_channels=widths, n_blocks=blocks,
            attention_type=attention, add_center_block=center, interpolation_mode=interpolation,
        )  # fmt: skip
        self.head = SegmentationHead(widths[-1], spec.num_outputs, kernel_size=3)

    def forward(self, features: list[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        levels = self.pyramid(features)
        decoded = self.decoder([placeholder(levels[-1], out_size), *levels])
        return resize(self.head(decoded), out_size)
