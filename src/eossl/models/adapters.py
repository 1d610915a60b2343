"""What trains when a pretrained encoder is fine-tuned: the ``adapter.mode`` of the evaluation protocols.

``frozen`` (0 encoder parameters train: the frozen-encoder protocol), ``spectral`` (the spectral-adapter
protocol, after SpectralEarth's "1D convolutions over bands": an encoder with its own
:class:`~eossl.models.encoder_zoo.spectral.SpectralReducer`, built with ``encoder.spectral_channels``,
trains that reducer only; any other encoder gets a small residual 1-D convolution over the band axis in
front of it, frozen, and trains that), ``first-layers`` (the first layer groups,
stem first), ``lora`` (low-rank updates of a frozen ViT's attention projections) and ``full``
(everything: the full fine-tuning protocol).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from eossl.errors import EncoderError
from eossl.models.encoder_zoo.spectral import SpectralReducer
from eossl.models.encoders import TimmEncoder
from eossl.models.interface import Encoder
from eossl.registry import Registry


class SpectralAdapter(nn.Module):
    """Residual per-pixel 1-D convolution over the bands; the identity at initialisation."""

    def __init__(self, bands: int, hidden: int = 16, kernel_size: int = 5) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"SpectralAdapter kernel_size must be odd to keep {bands} bands, got {kernel_size}")
        self.bands = bands
        self.conv1 = nn.Conv1d(1, hidden, kernel_size, padding=kernel_size // 2)
        self.conv2 = nn.Conv1d(hidden, 1, kernel_size, padding=kernel_size // 2)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        spectra = x.permute(0, 2, 3, 1).reshape(b * h * w, 1, c)
        delta = self.conv2(nn.functional.gelu(self.conv1(spectra)))
        return x + delta.reshape(b, h, w, c).permute(0, 3, 1, 2)


class AdaptedEncoder(Encoder):
    """``encoder(adapter(x))``: an :class:`Encoder` with the inner encoder's bands, features and pyramid."""

    def __init__(self, adapter: nn.Module, encoder: Encoder) -> None:
        super().__init__()
        self.adapter = adapter
        self.encoder = encoder
        self.in_chans, self.num_features = encoder.in_chans, encoder.num_features
        self.handles_missing = encoder.handles_missing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.adapter(x))

    @property
    def has_pyramid(self) -> bool:
        return self.encoder.has_pyramid

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.encoder.forward_pyramid(self.adapter(x))

    def forward_pyramid_and_pooled(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        return self.encoder.forward_pyramid_and_pooled(self.adapter(x))


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a low-rank update ``(alpha / rank) * B(A(x))``; equal to it at initialisation."""

    def __init__(self, base: nn.Linear, rank: int = 8, alpha: float = 16, dropout: float = 0.0) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)
        where = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_a = nn.Linear(base.in_features, rank, bias=False, **where)
        self.lora_b = nn.Linear(rank, base.out_features, bias=False, **where)
        nn.init.kaiming_uniform_(self.lora_a.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_b.weight)
        self.dropout = nn.Dropout(dropout)
        self.scale = alpha / rank

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * self.lora_b(self.lora_a(self.dropout(x)))


def _model_name(encoder: nn.Module) -> str:
    return type(encoder.model if isinstance(encoder, TimmEncoder) else encoder).__name__


def add_lora(encoder: nn.Module, rank: int = 8, alpha: float = 16, targets: tuple[str, ...] = ("qkv",)) -> int:
    """Wrap the ``targets`` linear layers of every attention module in :class:`LoRALinear`; how many were wrapped."""
    found = [
        (module, name)
        for module in encoder.modules()
        if "Attention" in type(module).__name__
        for name, child in module.named_children()
        if name in targets and isinstance(child, nn.Linear)
    ]
    if not found:
        raise EncoderError(
            f"LoRA needs attention blocks with {'/'.join(targets)} linear layers; {_model_name(encoder)} "
            "is not a ViT, use adapter mode first-layers or spectral"
        )
    for module, name in found:
        setattr(module, name, LoRALinear(getattr(module, name), rank, alpha))
    return len(found)


def layer_groups(encoder: Encoder) -> list[list[nn.Parameter]]:
    """The encoder's parameters in timm's coarse layer groups, input to output (ResNet: stem, layer1..4;
    a spectral encoder: its reducer, then its backbone's groups; a Siamese change encoder: its shared
    encoder's)."""
    groups = getattr(encoder, "layer_groups", None)
    if not callable(groups):
        raise EncoderError(f"{type(encoder).__name__} is not a timm encoder: its layers cannot be grouped")
    return groups()


@dataclass(frozen=True)
class AdapterOptions:
    """Settings of the adapter modes (the ``adapter`` protocol's config fills them)."""

    first_layers: int = 1
    lora_rank: int = 8
    lora_alpha: float = 16
    spectral_hidden: int = 16
    spectral_kernel: int = 5


class TrainableMode:
    """What trains when an encoder is fine-tuned; registered in :data:`ADAPTERS` by its mode name.

    ``protocol``: the mode is one of the ``adapter`` protocol's modes (``adapter-<mode>``), not a
    protocol of its own (``frozen``, ``full``). ``apply`` returns the module to train (maybe wrapping
    ``encoder``, which it may modify in place) with ``requires_grad`` set.
    """

    name: ClassVar[str]
    protocol: ClassVar[bool] = True

    @staticmethod
    def apply(encoder: Encoder, options: AdapterOptions) -> Encoder:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def protocol_name(options: AdapterOptions) -> str:
        raise NotImplementedError


ADAPTERS: Registry[type[TrainableMode]] = Registry("adapter mode")


@ADAPTERS.register("frozen")
class Frozen(TrainableMode):
    """Nothing trains (the frozen-encoder protocol)."""

    protocol = False

    @staticmethod
    def apply(encoder: Encoder, options: AdapterOptions) -> Encoder:
        return encoder.requires_grad_(False)


@ADAPTERS.register("full")
class Full(TrainableMode):
    """Every weight trains (full fine-tuning)."""

    protocol = False

    @staticmethod
    def apply(encoder: Encoder, options: AdapterOptions) -> Encoder:
        return encoder.requires_grad_(True)


@ADAPTERS.register("spectral")
class Spectral(TrainableMode):
    """The encoder's own :class:`SpectralReducer` trains when it has one (a :class:`SpectralEncoder`, or an
    encoder wrapping one): the reducer is then the only trainable part, as in SpectralEarth's adapter
    protocol. Otherwise a new :class:`SpectralAdapter` in front of the frozen encoder trains."""

    @staticmethod
    def apply(encoder: Encoder, options: AdapterOptions) -> Encoder:
        encoder.requires_grad_(False)
        reducers = [m for m in encoder.modules() if isinstance(m, SpectralReducer)]
        if reducers:
            for reducer in reducers:
                reducer.requires_grad_(True)
            return encoder
        reference = next(encoder.parameters())
        adapter = SpectralAdapter(encoder.in_chans, options.spectral_hidden, options.spectral_kernel)
        return AdaptedEncoder(adapter.to(device=reference.device, dtype=reference.dtype), encoder)

    @staticmethod
    def protocol_name(options: AdapterOptions) -> str:
        return "adapter-spectral"


@ADAPTERS.register("first-layers")
class FirstLayers(TrainableMode):
    """The first ``first_layers`` groups of :func:`layer_groups` (stem first) train."""

    @staticmethod
    def apply(encoder: Encoder, options: AdapterOptions) -> Encoder:
        encoder.requires_grad_(False)
        groups = layer_groups(encoder)
        if not 1 <= options.first_layers <= len(groups):
            raise EncoderError(f"first_layers must be between 1 and {len(groups)} (the encoder's layer groups)")
        for parameter in (p for group in groups[: options.first_layers] for p in group):
            parameter.requires_grad_(True)
        return encoder

    @staticmethod
    def protocol_name(options: AdapterOptions) -> str:
        return f"adapter-first-{options.first_layers}"


@ADAPTERS.register("lora")
class LoRA(TrainableMode):
    """Only the LoRA matrices added by :func:`add_lora` train (ViTs)."""

    @staticmethod
    def apply(encoder: Encoder, options: AdapterOptions) -> Encoder:
        encoder.requires_grad_(False)
        add_lora(encoder, options.lora_rank, options.lora_alpha)
        return encoder

    @staticmethod
    def protocol_name(options: AdapterOptions) -> str:
        return "adapter-lora"


def configure_trainable(encoder: Encoder, mode: str, **options: int | float) -> Encoder:
    """The module to train for ``mode`` (a name of :data:`ADAPTERS`; ``options``: :class:`AdapterOptions`
    fields), possibly wrapping ``encoder`` (modified in place), with ``requires_grad`` set."""
    if not isinstance(encoder, Encoder):
        raise EncoderError(
            f"{type(encoder).__name__} is not an eossl Encoder: build it with eossl.models.encoders.build_encoder"
        )
    return ADAPTERS[mode].apply(encoder, AdapterOptions(**options))


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
