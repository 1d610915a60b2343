"""A learned spectral reducer in front of any 2-D encoder, for hyperspectral input (SpectralEarth).

SpectralEarth (Braham et al., 2024) feeds EnMAP's 202 bands to ordinary 2-D backbones through "1D
convolutions to extract spectral features": per pixel, the spectrum is a 1-channel sequence that three
strided convolutions (+ BatchNorm + ReLU) turn into 128 features at a few spectral positions, which are
averaged. Their adapter has 56,192 parameters and is the only part trained by their adapter protocol.

:class:`SpectralReducer` is such an adapter (about as many parameters, strides chosen for speed) with a
1x1 projection to ``out_channels`` (default 32) bands;
:class:`SpectralEncoder` puts it in front of any :class:`~eossl.models.interface.Encoder` built for
``out_channels`` bands. ``encoder.spectral_channels`` selects it for any encoder name
(:func:`spectral_encoder_from_config`), and the ``spectral`` adapter mode trains only the reducer of
such an encoder (:mod:`eossl.models.adapters`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from eossl.errors import EncoderError
from eossl.models.interface import Encoder


class SpectralReducer(nn.Module):
    """Per-pixel 1-D convolutions along the band axis: ``[B, C, H, W]`` -> ``[B, out_channels, H, W]``
    for any band count ``C``; the spatial resolution is kept.

    Three blocks ``Conv1d(kernel = stride) -> BatchNorm -> ReLU`` over each pixel's spectrum (a
    1-channel sequence): ``widths`` 16, 64, 176 and ``kernels`` 13, 4, 4, so 202 EnMAP bands become 16,
    then 4, then 1 spectral position (a spectrum that does not fill its last window is zero-padded,
    so 2 or 12 bands work too), then the mean over the remaining positions and a 1x1 projection to
    ``out_channels`` (none when that is the last width). Parameters: 55,536 with the default 32
    outputs, whatever the band count (the kernels slide along the spectrum); SpectralEarth's adapter
    has 56,192.

    Cost, measured once on the 2-core CPU (fp32, one thread, a 64 x 202 x 32 x 32 batch, the best of
    5 while other jobs shared the machine): a ResNet-18 forward (202 bands, output stride 16) 0.215 s;
    this reducer 0.242 s (with a ResNet-18 on its 32 channels behind it: 0.345 s); SpectralEarth's own
    adapter (kernels 7, 7, 5, strides 5, 5, 3, widths 32, 64, 128; Conv2d over ``[B, 1, C, H*W]``) 1.36 s.
    Training step (forward + backward): ResNet-18 0.76 s, this reducer 1.08 s, SpectralEarth's 4.97 s.
    Conv1d over ``[B*H*W, 1, C]`` and Conv3d were slower than Conv2d; on this machine the cost is memory
    traffic, so the windows do not overlap (batched matrix products over ``[B * windows, kernel *
    channels, H*W]``, no permutes, BatchNorm folded into the product at inference) and the first block
    keeps about as many values per pixel as there are bands (16 windows x 16 channels for 202 bands).

    Inputs come normalised with non-finite values already filled (as every encoder's do); the reducer
    divides by nothing and pads with zeros, so it creates no non-finite values itself.
    """

    def __init__(
        self, out_channels: int = 32, widths: Sequence[int] = (16, 64, 176), kernels: Sequence[int] = (13, 4, 4)
    ) -> None:
        super().__init__()
        if out_channels <= 0:
            raise EncoderError(f"spectral reducer: out_channels must be positive, got {out_channels}")
        if len(widths) != len(kernels) or not widths:
            raise EncoderError("spectral reducer: widths and kernels need one entry per block")
        self.out_channels = out_channels
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        previous = 1
        for width, kernel in zip(widths, kernels, strict=True):
            self.convs.append(nn.Conv1d(previous, width, kernel, stride=kernel, bias=False))
            self.norms.append(nn.BatchNorm1d(width))
            previous = width
        self.project = None if previous == out_channels else nn.Conv1d(previous, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` (any ``C``) -> ``[B, out_channels, H, W]``."""
        b, c, h, w = x.shape
        pixels = h * w
        spectra, channels = x.reshape(b, c, pixels), 1  # [B, positions * channels, H*W]
        for conv, norm in zip(self.convs, self.norms, strict=True):
            kernel = conv.kernel_size[0]
            positions = spectra.shape[1] // channels
            windows = -(-positions // kernel)
            if windows * kernel != positions:  # zero-pad the spectrum to whole windows
                spectra = F.pad(spectra, (0, 0, 0, (windows * kernel - positions) * channels))
            columns = spectra.reshape(b * windows, kernel * channels, pixels)
            # Conv1d weight [out, in, k] -> [out, k * in]: the window's values are ordered (position, channel)
            weight = conv.weight.transpose(1, 2).reshape(conv.out_channels, kernel * channels)
            out = _normalised_product(weight, columns, norm)
            channels = conv.out_channels
            spectra = F.relu_(out).reshape(b, windows * channels, pixels)
        positions = spectra.shape[1] // channels
        pooled = spectra.reshape(b, positions, channels, pixels).mean(dim=1) if positions > 1 else spectra
        out = pooled if self.project is None else self.project(pooled)
        return out.reshape(b, self.out_channels, h, w)


def _normalised_product(weight: torch.Tensor, columns: torch.Tensor, norm: nn.BatchNorm1d) -> torch.Tensor:
    """``norm(weight @ columns)`` for ``columns`` ``[N, K, P]``: in training through the BatchNorm (batch
    statistics), at inference with the BatchNorm folded into the product (one pass instead of two)."""
    if norm.training or not norm.track_running_stats:
        return norm(torch.bmm(weight.expand(columns.shape[0], -1, -1), columns))
    scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
    shift = norm.bias - norm.running_mean * scale
    batch = (weight * scale[:, None]).expand(columns.shape[0], -1, -1)
    return torch.baddbmm(shift[None, :, None].to(columns.dtype), batch.to(columns.dtype), columns)


class SpectralEncoder(Encoder):
    """``backbone(reducer(x))``: the raw bands (``in_chans`` of them) through a :class:`SpectralReducer`,
    then any :class:`Encoder` built for the reducer's ``out_channels``; pooled features and pyramid are
    the backbone's."""

    def __init__(self, reducer: SpectralReducer, backbone: Encoder, in_chans: int) -> None:
        super().__init__()
        if backbone.in_chans != reducer.out_channels:
            raise EncoderError(
                f"spectral encoder: the backbone takes {backbone.in_chans} bands but the reducer gives "
                f"{reducer.out_channels}"
            )
        self.reducer = reducer
        self.backbone = backbone
        self.in_chans = in_chans
        self.num_features = backbone.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.reducer(x))

    @property
    def has_pyramid(self) -> bool:
        return self.backbone.has_pyramid

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.backbone.forward_pyramid(self.reducer(x))

    def forward_pyramid_and_pooled(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        return self.backbone.forward_pyramid_and_pooled(self.reducer(x))

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The reducer first, then the backbone's layer groups (the first-layers adapter mode)."""
        groups = getattr(self.backbone, "layer_groups", None)
        if groups is None:
            raise EncoderError(f"{type(self.backbone).__name__} has no layer groups")
        return [list(self.reducer.parameters()), *groups()]

    @property
    def first_conv(self) -> str:
        raise EncoderError(
            "a spectral encoder has no single first convolution to widen or replace (its reducer takes any "
            "band count): use late fusion or a Siamese change mode instead"
        )


def spectral_encoder_from_config(
    config: dict[str, Any], in_chans: int, dynamic_img_size: bool = False, wavelengths: Sequence[float] | None = None
) -> SpectralEncoder:
    """The :class:`SpectralEncoder` of an ``encoder`` section with ``spectral_channels`` set: the named
    encoder (timm or registered) built for ``spectral_channels`` bands behind a reducer of ``in_chans``."""
    from eossl.models.encoders import encoder_from_config, takes_wavelengths

    channels = config.get("spectral_channels")
    if not isinstance(channels, int) or isinstance(channels, bool) or channels <= 0:
        raise EncoderError(f"'encoder.spectral_channels' must be a positive number of channels, got {channels!r}")
    if takes_wavelengths(config["name"]):
        raise EncoderError(
            f"encoder '{config['name']}' embeds bands by their wavelengths; the reduced spectral channels have "
            "none, so it cannot follow a spectral reducer (unset encoder.spectral_channels)"
        )
    backbone = encoder_from_config({**config, "spectral_channels": None}, channels, dynamic_img_size)
    return SpectralEncoder(SpectralReducer(channels), backbone, in_chans)


__all__ = ["SpectralEncoder", "SpectralReducer", "spectral_encoder_from_config"]
