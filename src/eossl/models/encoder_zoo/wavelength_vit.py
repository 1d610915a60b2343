"""A ViT for any band set: the patch embedding is generated from each band's centre wavelength (DOFA).

DOFA (Xiong et al., 2024, "Neural plasticity-inspired foundation model for observing the Earth crossing
modalities") replaces a ViT's fixed patch-embedding convolution by a hypernetwork: each band's central
wavelength, Fourier-encoded, becomes that band's kernel, so one set of weights embeds Sentinel-2's 12
bands, EnMAP's 202 or any other optical sensor::

    e_c = mlp(fourier(wavelength_c) ++ fourier(bandwidth_c))        # one token per band, [C, h]
    t = transformer_layer([e_1 .. e_C, bias_query])                 # bands see each other (DOFA)
    W[:, c] = proj(norm(t_c + e_c)).view(D, p, p);  b = bias(t_bias) # kernels [D, C, p, p], bias [D]
    tokens = conv2d(x, W / (C * p), b, stride=p)                     # a mean over bands: scale-free in C

:class:`WavelengthPatchEmbed` is that embedding, shaped like timm's ``PatchEmbed`` so timm's
``VisionTransformer`` takes it as its ``embed_layer``; :class:`WavelengthViT` is the resulting timm ViT
behind the :class:`~eossl.models.encoders.TimmEncoder` interface (pooled = mean of the patch tokens,
pyramid = the token grid of every block, as for ViTs; LoRA and MAE work on it as on any timm ViT). The
wavelengths are buffers outside the state dict, so weights trained on 12 Sentinel-2 bands load into a
202-band EnMAP encoder. Registered as ``wavelength-vit-s`` and ``wavelength-vit-b``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed, to_2tuple
from timm.layers.format import Format, nchw_to
from torch import nn

from eossl.errors import EncoderError
from eossl.models.encoders import ENCODERS, TimmEncoder

DEFAULT_BANDWIDTH_NM = 50.0
"""Bandwidth assumed for a band with no neighbour to estimate it from."""


def fourier_features(values: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal encoding ``[N] -> [N, dim]`` (as transformer positions; DOFA's for wavelengths in nm):
    ``sin`` and ``cos`` of ``values / max_period ** (k / (dim / 2))`` for ``k < dim / 2``."""
    half = dim // 2
    frequencies = max_period ** (-torch.arange(half, device=values.device, dtype=torch.float32) / half)
    angles = values.float()[:, None] * frequencies[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def estimate_bandwidths(wavelengths: torch.Tensor) -> torch.Tensor:
    """Bandwidths (nm) estimated as each band's distance to its nearest neighbouring centre, clamped to
    1-500 nm (:data:`DEFAULT_BANDWIDTH_NM` for a single band): a proxy for spectral resolution only."""
    if len(wavelengths) < 2:
        return torch.full_like(wavelengths, DEFAULT_BANDWIDTH_NM)
    distance = (wavelengths[:, None] - wavelengths[None]).abs()
    distance.fill_diagonal_(float("inf"))
    return distance.min(dim=1).values.clamp(1.0, 500.0)


class WavelengthPatchEmbed(PatchEmbed):
    """Patch embedding whose per-band kernels come from the bands' wavelengths (see the module docstring).

    Takes timm ``PatchEmbed``'s arguments (it is its ``embed_layer``) plus ``wavelengths`` (nm, one per
    input band), optional ``bandwidths`` (nm; estimated from the neighbour spacing when None) and the
    hypernetwork's width ``hidden`` and ``heads``. The state dict does not depend on the band count:
    ``proj`` (the kernel generator's output layer, ``[D * p * p, hidden]``; named like ``PatchEmbed``'s
    convolution, which MAE's initialisation reads), ``bias``, ``encode``, ``mixer``, ``kernel_norm`` and
    ``bias_query``. With ViT-S and 8-px patches that is 3.4M parameters (a 12-band convolution: 0.3M;
    a 202-band one: 5.0M), generated in one pass per forward, not per sample.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] | None = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        norm_layer: Any = None,
        flatten: bool = True,
        output_fmt: str | None = None,
        bias: bool = True,
        strict_img_size: bool = True,
        dynamic_img_pad: bool = False,
        device: Any = None,
        dtype: Any = None,
        *,
        wavelengths: Sequence[float] | None = None,
        bandwidths: Sequence[float] | None = None,
        hidden: int = 128,
        heads: int = 4,
    ) -> None:
        super().__init__(
            img_size, patch_size, 1, embed_dim, norm_layer, flatten, output_fmt, bias, strict_img_size,
            dynamic_img_pad, device=device, dtype=dtype,
        )  # fmt: skip
        where = {"device": device, "dtype": dtype}
        self.embed_dim, self.hidden = embed_dim, hidden
        kernel = self.patch_size[0] * self.patch_size[1] * embed_dim
        self.encode = nn.Sequential(
            nn.Linear(hidden + hidden // 4, hidden, **where), nn.GELU(), nn.Linear(hidden, hidden, **where)
        )
        self.mixer = nn.TransformerEncoderLayer(
            hidden, heads, 2 * hidden, dropout=0.0, activation="gelu", batch_first=True, norm_first=True, **where
        )
        self.bias_query = nn.Parameter(torch.zeros(1, hidden, **where))
        self.kernel_norm = nn.LayerNorm(hidden, **where)  # the kernels' scale does not hang on the tokens'
        self.proj = nn.Linear(hidden, kernel, **where)  # replaces PatchEmbed's convolution
        self.bias = nn.Linear(hidden, embed_dim, **where) if bias else None
        self.register_buffer("wavelengths", torch.zeros(0), persistent=False)
        self.register_buffer("bandwidths", torch.zeros(0), persistent=False)
        self._override: tuple[torch.Tensor, torch.Tensor] | None = None
        if wavelengths is None:
            raise EncoderError("a wavelength patch embedding needs the centre wavelength (nm) of every band")
        self.set_wavelengths(wavelengths, bandwidths)
        if len(self.wavelengths) != in_chans:
            raise EncoderError(f"{len(self.wavelengths)} wavelengths were given for {in_chans} input bands")

    @property
    def in_chans(self) -> int:
        """The band count of the current wavelengths."""
        return len(self.wavelengths)

    def _band_set(
        self, wavelengths: Sequence[float] | torch.Tensor, bandwidths: Sequence[float] | torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.proj.weight.device
        centres = torch.as_tensor(wavelengths, dtype=torch.float32, device=device).flatten()
        if len(centres) == 0 or not torch.isfinite(centres).all() or (centres <= 0).any():
            raise EncoderError(f"band wavelengths must be positive numbers of nm, got {centres.tolist()}")
        if bandwidths is None:
            widths = estimate_bandwidths(centres)
        else:
            widths = torch.as_tensor(bandwidths, dtype=torch.float32, device=device).flatten()
            if widths.shape != centres.shape or (widths <= 0).any():
                raise EncoderError(f"need one positive bandwidth (nm) per band, got {widths.tolist()}")
        return centres, widths

    def set_wavelengths(
        self, wavelengths: Sequence[float] | torch.Tensor, bandwidths: Sequence[float] | torch.Tensor | None = None
    ) -> None:
        """Switch sensor: the band centres (nm) and, optionally, bandwidths (nm) of the input from now on."""
        self.wavelengths, self.bandwidths = self._band_set(wavelengths, bandwidths)

    @contextmanager
    def using(
        self, wavelengths: Sequence[float] | torch.Tensor | None, bandwidths: Sequence[float] | None = None
    ) -> Iterator[None]:
        """Embed with these wavelengths inside the block (None: the stored ones)."""
        if wavelengths is None:
            yield
            return
        previous, self._override = self._override, self._band_set(wavelengths, bandwidths)
        try:
            yield
        finally:
            self._override = previous

    def kernels(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The convolution weight ``[D, C, p, p]`` (already divided by ``C * p``) and bias ``[D]`` of the
        current band set."""
        centres, widths = self._override or (self.wavelengths, self.bandwidths)
        features = torch.cat(
            [fourier_features(centres, self.hidden), fourier_features(widths, self.hidden // 4)], dim=1
        ).to(self.proj.weight.dtype)
        tokens = self.encode(features)  # [C, hidden]
        mixed = self.mixer(torch.cat([tokens, self.bias_query]).unsqueeze(0)).squeeze(0)
        c, (ph, pw) = len(centres), self.patch_size
        weight = self.proj(self.kernel_norm(mixed[:c] + tokens)).view(c, self.embed_dim, ph, pw).transpose(0, 1)
        weight = weight / (c * math.sqrt(ph * pw))
        bias = self.bias(mixed[c]) if self.bias is not None else None
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bands = len((self._override or (self.wavelengths,))[0])
        if x.shape[1] != bands:
            raise EncoderError(
                f"the input has {x.shape[1]} bands but the wavelength embedding has {bands} wavelengths "
                "(set_wavelengths switches sensor)"
            )
        _, _, h, w = x.shape
        ph, pw = self.patch_size
        if self.strict_img_size and self.img_size is not None and (h, w) != tuple(self.img_size):
            raise EncoderError(f"input {h}x{w} does not match the embedding's {self.img_size[0]}x{self.img_size[1]}")
        if self.dynamic_img_pad:
            x = F.pad(x, (0, (pw - w % pw) % pw, 0, (ph - h % ph) % ph))
        elif h % ph or w % pw:
            raise EncoderError(f"input {h}x{w} is not a multiple of the patch size {ph}x{pw}")
        weight, bias = self.kernels()
        x = F.conv2d(x, weight, bias, stride=self.patch_size)
        if self.flatten:
            x = x.flatten(2).transpose(1, 2)  # NCHW -> NLC
        elif self.output_fmt != Format.NCHW:
            x = nchw_to(x, self.output_fmt)  # NHWC for timm's dynamic_img_size
        return self.norm(x)

    def set_input_size(self, img_size: Any = None, patch_size: Any = None) -> None:
        """A new ``img_size`` (the patch size is fixed: the generator makes kernels of one size)."""
        if patch_size is not None and tuple(to_2tuple(patch_size)) != self.patch_size:
            raise EncoderError("a wavelength patch embedding cannot change its patch size")
        super().set_input_size(img_size=img_size)


class WavelengthViT(TimmEncoder):
    """A timm ViT whose ``patch_embed`` is a :class:`WavelengthPatchEmbed` (``model``, as for timm
    encoders); ``in_chans`` follows the current wavelengths. ``forward``, ``forward_pyramid`` and
    ``forward_pyramid_and_pooled`` take optional ``wavelengths`` for one call."""

    @property
    def patch_embed(self) -> WavelengthPatchEmbed:
        return self.model.patch_embed

    def set_wavelengths(self, wavelengths: Sequence[float], bandwidths: Sequence[float] | None = None) -> None:
        """Switch sensor (the weights stay; ``in_chans`` becomes the new band count)."""
        self.patch_embed.set_wavelengths(wavelengths, bandwidths)
        self.in_chans = self.patch_embed.in_chans

    def forward(self, x: torch.Tensor, wavelengths: Sequence[float] | None = None) -> torch.Tensor:
        with self.patch_embed.using(wavelengths):
            return self.model(x)

    def forward_pyramid(self, x: torch.Tensor, wavelengths: Sequence[float] | None = None) -> list[torch.Tensor]:
        with self.patch_embed.using(wavelengths):
            return super().forward_pyramid(x)

    def forward_pyramid_and_pooled(
        self, x: torch.Tensor, wavelengths: Sequence[float] | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        with self.patch_embed.using(wavelengths):
            return super().forward_pyramid_and_pooled(x)

    def check_bands(self, x: torch.Tensor, modality: str) -> None:
        if x.shape[1] != self.in_chans:
            raise EncoderError(
                f"modality '{modality}' has {x.shape[1]} bands but the wavelength encoder is set to "
                f"{self.in_chans} wavelengths (set_wavelengths switches sensor)"
            )


def wavelength_vit(
    timm_name: str, wavelengths: Sequence[float], img_size: int = 224, patch_size: int = 8, label: str = ""
) -> WavelengthViT:
    """timm ``timm_name`` (a ViT) with a :class:`WavelengthPatchEmbed` for ``wavelengths`` (nm), built for
    ``img_size`` px (any multiple of ``patch_size`` works: the position embedding is interpolated)."""
    label = label or timm_name
    if img_size % patch_size:
        raise EncoderError(f"encoder '{label}': img_size {img_size} is not a multiple of patch_size {patch_size}")
    embed = partial(WavelengthPatchEmbed, wavelengths=list(wavelengths))
    model = timm.create_model(
        timm_name, pretrained=False, in_chans=len(wavelengths), num_classes=0, img_size=img_size,
        patch_size=patch_size, global_pool="avg", dynamic_img_size=True, embed_layer=embed,
    )  # fmt: skip
    model.pretrained_cfg = {**model.pretrained_cfg, "first_conv": None}  # no single first convolution
    return WavelengthViT(model, len(wavelengths))


def _builder(timm_name: str, label: str):
    def build(
        config: dict[str, Any],
        in_chans: int,
        dynamic_img_size: bool = False,
        wavelengths: Sequence[float] | None = None,
    ) -> WavelengthViT:
        if wavelengths is None:
            raise EncoderError(
                f"encoder '{label}' makes each band's patch kernel from its centre wavelength, but the modality "
                "declares no wavelengths_nm (e.g. SAR or a stacked input): give the modality wavelengths or "
                "use another encoder"
            )
        if len(wavelengths) != in_chans:
            raise EncoderError(f"encoder '{label}': {len(wavelengths)} wavelengths for {in_chans} bands")
        unused = [k for k in ("weights_file",) if config.get(k)]
        if config.get("stem", "imagenet") != "imagenet" or config.get("output_stride") not in (None, 32):
            unused.append("stem/output_stride")
        if unused:
            raise EncoderError(f"encoder '{label}' does not take {', '.join(unused)} (set patch_size, img_size)")
        img_size = config.get("img_size") or 224
        return wavelength_vit(timm_name, wavelengths, img_size, config.get("patch_size") or 8, label)

    build.__doc__ = f"``{label}``: :func:`wavelength_vit` of timm ``{timm_name}``."
    build.vision_transformer = True  # type: ignore[attr-defined]
    return build


build_wavelength_vit_s = ENCODERS.register("wavelength-vit-s")(_builder("vit_small_patch16_224", "wavelength-vit-s"))
build_wavelength_vit_b = ENCODERS.register("wavelength-vit-b")(_builder("vit_base_patch16_224", "wavelength-vit-b"))

__all__ = [
    "WavelengthPatchEmbed",
    "WavelengthViT",
    "build_wavelength_vit_b",
    "build_wavelength_vit_s",
    "estimate_bandwidths",
    "fourier_features",
    "wavelength_vit",
]
