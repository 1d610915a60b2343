"""What trains when a pretrained encoder is fine-tuned: the ``adapter.mode`` of the evaluation protocols.

``frozen`` (0 encoder parameters train: the frozen-encoder protocol), ``spectral`` (a small residual
1-D convolution over the band axis in front of the frozen encoder, after SpectralEarth's "1D
convolutions over bands": the spectral-adapter protocol), ``first-layers`` (the first layer groups,
stem first), ``lora`` (low-rank updates of a frozen ViT's attention projections) and ``full``
(everything: the full fine-tuning protocol).
"""

from __future__ import annotations

import math

import torch
from timm.models import group_parameters
from torch import nn

MODES = ("frozen", "full", "spectral", "first-layers", "lora")


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


class AdaptedEncoder(nn.Module):
    """``encoder(adapter(x))``; keeps the encoder's ``num_features``, ``eossl_in_chans``, ``forward_intermediates``
    and ``forward_head``."""

    def __init__(self, adapter: nn.Module, encoder: nn.Module) -> None:
        super().__init__()
        self.adapter = adapter
        self.encoder = encoder
        self.num_features = encoder.num_features
        if hasattr(encoder, "eossl_in_chans"):
            self.eossl_in_chans = encoder.eossl_in_chans
        if hasattr(encoder, "forward_intermediates"):  # so that hasattr() tells dense decoders the truth
            self.forward_intermediates = self._forward_intermediates
        if hasattr(encoder, "forward_head"):  # pools forward_intermediates' final map like forward()
            self.forward_head = encoder.forward_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.adapter(x))

    def _forward_intermediates(self, x: torch.Tensor, *args, **kwargs):
        return self.encoder.forward_intermediates(self.adapter(x), *args, **kwargs)


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
        raise ValueError(
            f"LoRA needs attention blocks with {'/'.join(targets)} linear layers; {type(encoder).__name__} "
            "is not a ViT, use adapter.mode=first-layers or spectral"
        )
    for module, name in found:
        setattr(module, name, LoRALinear(getattr(module, name), rank, alpha))
    return len(found)


def layer_groups(encoder: nn.Module) -> list[list[nn.Parameter]]:
    """The encoder's parameters in timm's coarse layer groups, input to output (ResNet: stem, layer1..4)."""
    if not hasattr(encoder, "group_matcher"):
        raise ValueError(f"{type(encoder).__name__} has no timm group_matcher: its layers cannot be grouped")
    groups = group_parameters(encoder, encoder.group_matcher(coarse=True), return_values=True)
    return [groups[key] for key in sorted(groups)]


def configure_trainable(
    encoder: nn.Module,
    mode: str,
    first_layers: int = 1,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    spectral_hidden: int = 16,
    spectral_kernel: int = 5,
) -> nn.Module:
    """The module to train for ``mode`` (possibly wrapping ``encoder``, modified in place), with requires_grad set.

    ``frozen``: nothing trains (frozen-encoder protocol). ``full``: everything trains (full fine-tuning).
    ``spectral``: a new :class:`SpectralAdapter` (``spectral_hidden`` channels, odd ``spectral_kernel``)
    in front of the frozen encoder trains (spectral-adapter protocol). ``first-layers``: the first
    ``first_layers`` groups of :func:`layer_groups` train.
    ``lora``: only the LoRA matrices added by :func:`add_lora` train (ViTs).
    """
    if mode not in MODES:
        raise ValueError(f"unknown adapter mode '{mode}': use one of {', '.join(MODES)}")
    encoder.requires_grad_(mode == "full")
    if mode == "spectral":
        bands = getattr(encoder, "eossl_in_chans", None)
        if bands is None:
            raise ValueError(
                "spectral adapter needs the encoder's band count (eossl_in_chans): build it with build_encoder"
            )
        reference = next(encoder.parameters())
        adapter = SpectralAdapter(bands, spectral_hidden, spectral_kernel)
        adapter = adapter.to(device=reference.device, dtype=reference.dtype)
        return AdaptedEncoder(adapter, encoder)
    if mode == "first-layers":
        groups = layer_groups(encoder)
        if not 1 <= first_layers <= len(groups):
            raise ValueError(f"first_layers must be between 1 and {len(groups)} (the encoder's layer groups)")
        for parameter in (p for group in groups[:first_layers] for p in group):
            parameter.requires_grad_(True)
    elif mode == "lora":
        add_lora(encoder, lora_rank, lora_alpha)  # the new LoRA matrices are the only trainable parameters
    return encoder


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
