"""Dense decoders over any encoder's feature pyramid: per-pixel logits ``[B, num_outputs, H, W]`` at
the input size, for per-pixel classification (K outputs) and regression (1 output) alike.

:data:`DECODERS` holds one file per decoder (``fpn``, ``unet``, ``deeplabv3plus``, ``upernet``,
``upconv``); :func:`build_decoder` probes an encoder's pyramid once (channels and reductions, a
:class:`DecoderSpec`) and builds one by name, ``auto`` giving ``unet`` on multi-scale pyramids (CNNs,
Swin) and ``upconv`` on single-scale ones (ViTs). ``unet``, ``deeplabv3plus`` and ``upernet`` are
segmentation-models-pytorch's decoders with glue for eossl's pyramid layouts (dilated levels,
full-resolution levels, ViT grids through a simple feature pyramid, :mod:`._neck`).
"""

from __future__ import annotations

from eossl.models.decoders._base import (
    AUTO,
    DECODERS,
    DecoderSpec,
    build_decoder,
    decoder_from_spec,
    decoder_names,
    probe_pyramid,
    resolve_decoder,
)
from eossl.models.decoders.fpn import FPNDecoder, PyramidDecoder, feature_pyramid, pyramid_and_pooled, pyramid_channels

__all__ = [
    "AUTO",
    "DECODERS",
    "DecoderSpec",
    "FPNDecoder",
    "PyramidDecoder",
    "build_decoder",
    "decoder_from_spec",
    "decoder_names",
    "feature_pyramid",
    "probe_pyramid",
    "pyramid_and_pooled",
    "pyramid_channels",
    "resolve_decoder",
]
