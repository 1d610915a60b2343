"""What every dense decoder shares: the pyramid it is built for (:class:`DecoderSpec`), the registry
(:data:`DECODERS`) and the builders (:func:`build_decoder`, :func:`decoder_from_spec`)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from eossl.errors import ConfigError, EncoderError, UnknownNameError
from eossl.models.interface import Encoder
from eossl.registry import Registry

DECODERS: Registry[type[nn.Module]] = Registry("decoder", packages=("eossl.models.decoders",))
"""Decoders by name: classes built as ``cls(spec: DecoderSpec, **options)`` whose ``forward(features,
out_size)`` gives ``[B, num_outputs, *out_size]`` logits; one file per decoder in this package."""

AUTO = "auto"
"""The decoder name that picks one from the pyramid's layout (:func:`resolve_decoder`)."""


@dataclass(frozen=True)
class DecoderSpec:
    """The pyramid a decoder is built for and what it predicts.

    ``channels`` and ``reductions`` (input size / map size, e.g. 4.0 for a map of a quarter of the
    input's side) of each pyramid level, finest first; ``num_outputs`` channels of the logits (K classes,
    or 1 for per-pixel regression); ``image_size``: the input size the pyramid was probed with.
    """

    channels: tuple[int, ...]
    reductions: tuple[float, ...]
    num_outputs: int
    image_size: int | None = None

    def __post_init__(self) -> None:
        if not self.channels or len(self.channels) != len(self.reductions):
            raise EncoderError(f"a decoder needs one reduction per pyramid level: {self.channels} vs {self.reductions}")
        if any(b < a for a, b in zip(self.reductions, self.reductions[1:], strict=False)):
            raise EncoderError(f"pyramid levels must come finest first, got reductions {self.reductions}")
        if self.num_outputs < 1:
            raise ConfigError(f"a decoder needs at least one output, got {self.num_outputs}")

    @property
    def single_scale(self) -> bool:
        """True when every level has one reduction (ViT token grids): decoders add their own scales."""
        return len(set(self.reductions)) == 1

    @classmethod
    def probe(cls, encoder: Encoder, image_size: int, num_outputs: int) -> DecoderSpec:
        """The spec of ``encoder``'s pyramid for ``image_size`` inputs (one zero forward pass, as
        :meth:`~eossl.models.interface.Encoder.feature_channels`)."""
        channels, reductions = probe_pyramid(encoder, image_size)
        return cls(channels, reductions, num_outputs, image_size)


def probe_pyramid(encoder: Encoder, image_size: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Channels and reductions (``image_size`` / map height) of each level of ``encoder``'s pyramid."""
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            device = next(iter(encoder.parameters()), torch.empty(0)).device
            probe = torch.zeros(1, encoder.in_chans, image_size, image_size, device=device)
            levels = encoder.forward_pyramid(probe)
    finally:
        encoder.train(was_training)
    return tuple(int(f.shape[1]) for f in levels), tuple(image_size / int(f.shape[-2]) for f in levels)


def resolve_decoder(name: str, spec: DecoderSpec) -> str:
    """``name``, or for ``auto``: ``upconv`` on single-scale pyramids (ViT-like), ``unet`` otherwise (CNNs, Swin)."""
    if name != AUTO:
        return name
    return "upconv" if spec.single_scale else "unet"


def decoder_names() -> list[str]:
    """The names :func:`build_decoder` accepts: ``auto`` and every registered decoder."""
    return [AUTO, *DECODERS.names()]


def decoder_from_spec(name: str, spec: DecoderSpec, **options: object) -> nn.Module:
    """The decoder ``name`` (or ``auto``, :func:`resolve_decoder`) for ``spec``, with its ``options``."""
    resolved = resolve_decoder(name, spec)
    if resolved not in DECODERS:
        raise UnknownNameError(f"unknown decoder '{name}' (available: {', '.join(decoder_names())})")
    cls = DECODERS[resolved]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "spec")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"decoder '{resolved}' has no option {', '.join(unknown)} (its options: {', '.join(accepted) or 'none'})"
        )
    return cls(spec, **options)


def build_decoder(name: str, encoder: Encoder, image_size: int, num_outputs: int, **options: object) -> nn.Module:
    """The decoder ``name`` over ``encoder``'s pyramid (probed once at ``image_size``) with ``num_outputs``
    logits per pixel. ``options`` are the decoder class's keyword arguments (widths, modes)."""
    return decoder_from_spec(name, DecoderSpec.probe(encoder, image_size, num_outputs), **options)


# -- helpers the decoders share ----------------------------------------------------------------------


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``x`` bilinearly resized to ``size`` (returned as is when it already has that size)."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def placeholder(like: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """A zero-channel map of ``size``: the input-resolution (and stride-2) entries smp decoders expect
    first in their feature list but do not read (or read only for their size)."""
    return like.new_zeros(like.shape[0], 0, int(size[0]), int(size[1]))


def upsampling_steps(reduction: float) -> int:
    """How many 2x upsamplings bring a map at ``reduction`` to (at least) the input resolution."""
    return max(0, math.ceil(math.log2(reduction) - 1e-9))
