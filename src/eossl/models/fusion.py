"""Multi-modal fusion of co-registered modalities, and sensor dropout.

Input convention: one stacked tensor ``[B, sum(C_m), H, W]`` holding the modalities in a fixed order
(``channels`` gives each one's band count), normalised per band. A modality that is missing for a
sample (sensor failure, no acquisition, dropped on purpose) is NaN in all of its channels. The
fusion modules set ``handles_missing = True`` so the NaN reach them unfilled
(:func:`eossl.data.normalize.normalize_input`); they tell present from absent modalities per sample,
fill the remaining NaN with 0 (the band mean) and fuse over the present modalities only.

- Early fusion with modality stems (:func:`with_modality_stems`): one timm encoder whose first
  convolution (ResNet ``conv1``, ViT ``patch_embed.proj``) is replaced by one convolution per
  modality; the stem outputs of the present modalities are averaged, then the shared trunk runs.
  (Plain early fusion is an ordinary encoder built with ``sum(C_m)`` input bands.)
- Late fusion (:class:`LateFusionEncoder`): one encoder per modality; features are concatenated
  (a missing modality contributes zeros), or projected to a common width and averaged (``sum``) or
  attention-pooled (``attention``, gated attention over the present modalities).
- Sensor dropout (:func:`drop_modalities`): blank random modalities of random samples during
  training, always keeping at least one, so the fused model works when a sensor is missing.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import nn

LateFusionMode = Literal["concat", "sum", "attention"]


def split_modalities(x: torch.Tensor, channels: list[int]) -> list[torch.Tensor]:
    """The per-modality parts of a stacked tensor."""
    if x.shape[1] != sum(channels):
        raise ValueError(f"stacked input has {x.shape[1]} channels, the modalities {channels} need {sum(channels)}")
    return list(torch.split(x, channels, dim=1))


def presence(parts: list[torch.Tensor]) -> torch.Tensor:
    """``[B, M]`` bool: whether modality ``m`` of sample ``b`` holds any finite value."""
    return torch.stack([torch.isfinite(p).flatten(1).any(dim=1) for p in parts], dim=1)


def drop_presence(present: torch.Tensor, probability: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sensor dropout on a ``[B, M]`` presence mask: each present modality is dropped with
    ``probability``, but a sample keeps at least one of its present modalities (drawn at random)."""
    if probability <= 0:
        return present
    draw = torch.rand(present.shape, generator=generator).to(present.device)
    keep = present & (draw >= probability)
    lost = ~keep.any(dim=1) & present.any(dim=1)
    if lost.any():
        scores = torch.rand(present.shape, generator=generator).to(present.device) * present
        keep[lost] = torch.nn.functional.one_hot(scores[lost].argmax(dim=1), present.shape[1]).bool()
    return keep


def blank(parts: list[torch.Tensor], keep: torch.Tensor) -> list[torch.Tensor]:
    """Parts with the modalities not in ``keep`` (``[B, M]``) set to NaN (absent)."""
    nan = float("nan")
    return [torch.where(k.view(-1, 1, 1, 1), p, torch.full_like(p, nan)) for p, k in zip(parts, keep.T, strict=True)]


def drop_modalities(
    x: torch.Tensor, channels: list[int], probability: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Sensor dropout on a stacked tensor: dropped modalities become NaN (see :func:`drop_presence`)."""
    if probability <= 0:
        return x
    parts = split_modalities(x, channels)
    return torch.cat(blank(parts, drop_presence(presence(parts), probability, generator)), dim=1)


def _present_parts(module: nn.Module, x: torch.Tensor, channels: list[int]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Parts with NaN filled by 0 (the band mean), and which modalities are present; in training mode
    with ``module.sensor_dropout`` > 0 some present modalities are dropped (zeroed and marked absent)."""
    parts = split_modalities(x, channels)
    present = presence(parts)
    if module.training and getattr(module, "sensor_dropout", 0.0) > 0:
        kept = drop_presence(present, module.sensor_dropout)
        parts = blank(parts, kept)
        present = kept
    return [torch.nan_to_num(p, nan=0.0) for p in parts], present


def _masked_mean(values: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (``[B, ...]`` each) over the present modalities of each sample."""
    weights = present.to(values[0].dtype)
    weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1)
    shape = (-1,) + (1,) * (values[0].ndim - 1)
    return sum(v * w.view(shape) for v, w in zip(values, weights.T, strict=True))


def _first_conv_name(encoder: nn.Module) -> str:
    name = getattr(encoder, "pretrained_cfg", {}).get("first_conv")
    if isinstance(name, (list, tuple)):
        name = name[0]
    if not name or not isinstance(encoder.get_submodule(name), nn.Conv2d):
        raise TypeError(f"encoder {type(encoder).__name__} has no single first convolution to split into stems")
    return name


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


class ModalityStems(nn.Module):
    """One input convolution per modality; the outputs of the present modalities are averaged."""

    def __init__(self, template: nn.Conv2d, channels: dict[str, int]) -> None:
        super().__init__()
        self.names, self.channels = list(channels), list(channels.values())
        self.convs = nn.ModuleDict()
        for name, bands in channels.items():
            conv = nn.Conv2d(
                bands, template.out_channels, template.kernel_size, template.stride, template.padding,
                template.dilation, template.groups, template.bias is not None,
            )  # fmt: skip
            self.convs[name] = conv

    sensor_dropout: float = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts, present = _present_parts(self, x, self.channels)
        outputs = [self.convs[n](p) for n, p in zip(self.names, parts, strict=True)]
        return _masked_mean(outputs, present)


def with_modality_stems(encoder: nn.Module, channels: dict[str, int]) -> nn.Module:
    """``encoder`` with its first convolution replaced by :class:`ModalityStems` (early fusion with
    modality-specific stems and a shared trunk); it then takes the stacked modalities."""
    name = _first_conv_name(encoder)
    _set_submodule(encoder, name, ModalityStems(encoder.get_submodule(name), channels))
    encoder.eossl_in_chans = sum(channels.values())
    encoder.eossl_stems = name
    encoder.handles_missing = True
    return encoder


def single_modality_encoder(encoder: nn.Module, modality: str) -> nn.Module:
    """A plain encoder for one modality cut out of a stem-fused one: the trunk with that modality's stem.
    Gives the same features as the fused encoder when only that modality is present."""
    stems: ModalityStems = encoder.get_submodule(encoder.eossl_stems)
    if modality not in stems.convs:
        raise KeyError(f"the encoder has stems for {', '.join(stems.names)}, not for modality '{modality}'")
    single = copy.deepcopy(encoder)
    _set_submodule(single, encoder.eossl_stems, copy.deepcopy(stems.convs[modality]))
    single.eossl_in_chans = stems.channels[stems.names.index(modality)]
    del single.eossl_stems, single.handles_missing
    return single


class FeatureFusion(nn.Module):
    """Fuse per-modality features (``[B, C_m]`` vectors or ``[B, C_m, h, w]`` maps) of present modalities."""

    def __init__(self, channels: list[int], mode: LateFusionMode) -> None:
        super().__init__()
        self.mode, self.channels = mode, list(channels)
        width = channels[0]
        if mode == "concat":
            self.out_channels = sum(channels)
        elif mode in ("sum", "attention"):
            self.out_channels = width
            self.project = nn.ModuleList(nn.Conv2d(c, width, kernel_size=1) for c in channels)
            if mode == "attention":
                self.score = nn.Sequential(nn.Linear(width, width // 2 or 1), nn.Tanh(), nn.Linear(width // 2 or 1, 1))
        else:
            raise ValueError(f"late fusion mode '{mode}' is not one of concat, sum, attention")

    def forward(self, parts: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        vector = parts[0].ndim == 2
        if self.mode == "concat":
            shape = (-1,) + (1,) * (parts[0].ndim - 1)
            return torch.cat([p * k.to(p.dtype).view(shape) for p, k in zip(parts, present.T, strict=True)], dim=1)
        as_maps = [p[:, :, None, None] if vector else p for p in parts]
        projected = [proj(p) for proj, p in zip(self.project, as_maps, strict=True)]
        if self.mode == "sum":
            fused = _masked_mean(projected, present)
        else:
            scores = torch.cat([self.score(p.mean(dim=(2, 3))) for p in projected], dim=1)  # [B, M]
            weights = torch.softmax(scores.float().masked_fill(~present, float("-inf")), dim=1)
            weights = torch.nan_to_num(weights).to(projected[0].dtype)  # a sample with nothing present: zeros
            fused = sum(p * w.view(-1, 1, 1, 1) for p, w in zip(projected, weights.T, strict=True))
        return fused[:, :, 0, 0] if vector else fused


class LateFusionEncoder(nn.Module):
    """One encoder per modality on the stacked input; pooled features (and, for dense tasks, every
    pyramid level) fused by :class:`FeatureFusion`. ``sensor_dropout`` acts in training mode."""

    handles_missing = True
    sensor_dropout: float = 0.0

    def __init__(self, encoders: dict[str, nn.Module], channels: dict[str, int], mode: LateFusionMode,
                 image_size: int) -> None:  # fmt: skip
        super().__init__()
        from eossl.models.decoders import pyramid_channels

        if list(encoders) != list(channels):
            raise ValueError(f"encoders {list(encoders)} and channels {list(channels)} name different modalities")
        self.names, self.channels, self.mode = list(channels), list(channels.values()), mode
        self.encoders = nn.ModuleDict(encoders)
        self.fuse = FeatureFusion([int(e.num_features) for e in encoders.values()], mode)
        self.num_features = self.fuse.out_channels
        self.eossl_in_chans = sum(self.channels)
        self.level_fusion = None
        if all(hasattr(e, "forward_intermediates") for e in encoders.values()):
            levels = [pyramid_channels(e, c, image_size) for e, c in zip(encoders.values(), self.channels, strict=True)]
            if len({len(v) for v in levels}) == 1:
                self.level_fusion = nn.ModuleList(FeatureFusion(list(cs), mode) for cs in zip(*levels, strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts, present = _present_parts(self, x, self.channels)
        return self.fuse([self.encoders[n](p) for n, p in zip(self.names, parts, strict=True)], present)

    def forward_intermediates(self, x: torch.Tensor, intermediates_only: bool = True) -> list[torch.Tensor]:
        """Fused feature maps of every pyramid level (``intermediates_only`` must be True)."""
        if self.level_fusion is None or not intermediates_only:
            raise TypeError("late fusion gives dense features only for encoders with matching feature pyramids")
        parts, present = _present_parts(self, x, self.channels)
        pyramids = [
            self.encoders[n].forward_intermediates(p, intermediates_only=True)
            for n, p in zip(self.names, parts, strict=True)
        ]
        levels = zip(*pyramids, strict=True)
        return [fuse(list(level), present) for fuse, level in zip(self.level_fusion, levels, strict=True)]


class EarlyFusionEncoder(nn.Module):
    """Plain early fusion: one encoder on all stacked channels; a missing modality is filled with its
    band means (0 after normalisation), and ``sensor_dropout`` (training mode) blanks modalities."""

    handles_missing = True
    sensor_dropout: float = 0.0

    def __init__(self, encoder: nn.Module, channels: dict[str, int]) -> None:
        super().__init__()
        self.encoder, self.names, self.channels = encoder, list(channels), list(channels.values())
        self.num_features = int(encoder.num_features)
        self.eossl_in_chans = sum(self.channels)

    def _fill(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(_present_parts(self, x, self.channels)[0], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self._fill(x))

    def forward_intermediates(self, x: torch.Tensor, intermediates_only: bool = True) -> list[torch.Tensor]:
        return self.encoder.forward_intermediates(self._fill(x), intermediates_only=intermediates_only)


def set_sensor_dropout(encoder: nn.Module, probability: float) -> None:
    """Set the sensor dropout of every fusion module inside ``encoder`` (acts in training mode only)."""
    for module in encoder.modules():
        if isinstance(module, (ModalityStems, LateFusionEncoder, EarlyFusionEncoder)):
            module.sensor_dropout = probability
