"""Multi-modal fusion of co-registered modalities, and sensor dropout.

Input convention: one stacked tensor ``[B, sum(C_m), H, W]`` holding the modalities in a fixed order
(``channels`` gives each one's band count), normalised per band. A modality that is missing for a
sample (sensor failure, no acquisition, dropped on purpose) is NaN in all of its channels. The
fusion encoders set ``handles_missing = True`` so the NaN reach them unfilled
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

from eossl.errors import EncoderError
from eossl.models.encoders import TimmEncoder
from eossl.models.interface import Encoder

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


def _present_parts(
    module: ModalityStems | LateFusionEncoder | EarlyFusionEncoder, x: torch.Tensor, channels: list[int]
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Parts with NaN filled by 0 (the band mean), and which modalities are present; in training mode
    with ``module.sensor_dropout`` > 0 some present modalities are dropped (zeroed and marked absent)."""
    parts = split_modalities(x, channels)
    present = presence(parts)
    if module.training and module.sensor_dropout > 0:
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


class StemFusedEncoder(Encoder):
    """Early fusion with modality-specific stems: a timm trunk whose first convolution (ResNet ``conv1``,
    ViT ``patch_embed.proj``) is a :class:`ModalityStems`; it takes the stacked modalities."""

    handles_missing = True

    def __init__(self, trunk: TimmEncoder, channels: dict[str, int]) -> None:
        super().__init__()
        self.stem_path = trunk.first_conv
        _set_submodule(trunk.model, self.stem_path, ModalityStems(trunk.model.get_submodule(self.stem_path), channels))
        trunk.in_chans = sum(channels.values())
        self.trunk, self.channels = trunk, dict(channels)
        self.in_chans, self.num_features = trunk.in_chans, trunk.num_features

    @property
    def stems(self) -> ModalityStems:
        return self.trunk.model.get_submodule(self.stem_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    @property
    def has_pyramid(self) -> bool:
        return self.trunk.has_pyramid

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.trunk.forward_pyramid(x)

    def forward_pyramid_and_pooled(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        return self.trunk.forward_pyramid_and_pooled(x)

    def single(self, modality: str) -> TimmEncoder:
        """A plain encoder for one modality: the trunk with that modality's stem. It gives the same
        features as this encoder when only that modality is present."""
        if modality not in self.stems.convs:
            raise EncoderError(
                f"the encoder has stems for {', '.join(self.stems.names)}, not for modality '{modality}'"
            )
        single = copy.deepcopy(self.trunk)
        _set_submodule(single.model, self.stem_path, copy.deepcopy(self.stems.convs[modality]))
        single.in_chans = self.channels[modality]
        return single


def with_modality_stems(encoder: TimmEncoder, channels: dict[str, int]) -> StemFusedEncoder:
    """``encoder`` with its first convolution replaced by :class:`ModalityStems` (early fusion with
    modality-specific stems and a shared trunk); it then takes the stacked modalities."""
    return StemFusedEncoder(encoder, channels)


def single_modality_encoder(encoder: StemFusedEncoder, modality: str) -> TimmEncoder:
    """A plain encoder for one modality cut out of a stem-fused one (see :meth:`StemFusedEncoder.single`)."""
    return encoder.single(modality)


class ModalityView(Encoder):
    """A stem-fused encoder fed one modality: the others are blanked (NaN), so only its stem contributes."""

    def __init__(self, fused: StemFusedEncoder, modality: str) -> None:
        super().__init__()
        self.fused, self.modality = fused, modality
        self.in_chans, self.num_features = fused.channels[modality], fused.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        nan = float("nan")
        parts = [x if n == self.modality else x.new_full((b, c, h, w), nan) for n, c in self.fused.channels.items()]
        return self.fused(torch.cat(parts, dim=1))


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


class LateFusionEncoder(Encoder):
    """One encoder per modality on the stacked input; pooled features (and, for dense tasks, every
    pyramid level) fused by :class:`FeatureFusion`. ``sensor_dropout`` acts in training mode."""

    handles_missing = True
    sensor_dropout: float = 0.0

    def __init__(self, encoders: dict[str, Encoder], channels: dict[str, int], mode: LateFusionMode,
                 image_size: int) -> None:  # fmt: skip
        super().__init__()
        if list(encoders) != list(channels):
            raise ValueError(f"encoders {list(encoders)} and channels {list(channels)} name different modalities")
        self.names, self.channels, self.mode = list(channels), list(channels.values()), mode
        self.encoders = nn.ModuleDict(encoders)
        self.fuse = FeatureFusion([int(e.num_features) for e in encoders.values()], mode)
        self.num_features = self.fuse.out_channels
        self.in_chans = sum(self.channels)
        self.level_fusion = None
        if all(e.has_pyramid for e in encoders.values()):
            levels = [e.feature_channels(image_size) for e in encoders.values()]
            if len({len(v) for v in levels}) == 1:
                self.level_fusion = nn.ModuleList(FeatureFusion(list(cs), mode) for cs in zip(*levels, strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts, present = _present_parts(self, x, self.channels)
        return self.fuse([self.encoders[n](p) for n, p in zip(self.names, parts, strict=True)], present)

    @property
    def has_pyramid(self) -> bool:
        return self.level_fusion is not None

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Fused feature maps of every pyramid level."""
        if self.level_fusion is None:
            raise EncoderError("late fusion gives dense features only for encoders with matching feature pyramids")
        parts, present = _present_parts(self, x, self.channels)
        pyramids = [self.encoders[n].forward_pyramid(p) for n, p in zip(self.names, parts, strict=True)]
        levels = zip(*pyramids, strict=True)
        return [fuse(list(level), present) for fuse, level in zip(self.level_fusion, levels, strict=True)]


class EarlyFusionEncoder(Encoder):
    """Plain early fusion: one encoder on all stacked channels; a missing modality is filled with its
    band means (0 after normalisation), and ``sensor_dropout`` (training mode) blanks modalities."""

    handles_missing = True
    sensor_dropout: float = 0.0

    def __init__(self, encoder: Encoder, channels: dict[str, int]) -> None:
        super().__init__()
        self.encoder, self.names, self.channels = encoder, list(channels), list(channels.values())
        self.num_features = int(encoder.num_features)
        self.in_chans = sum(self.channels)

    def _fill(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(_present_parts(self, x, self.channels)[0], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self._fill(x))

    @property
    def has_pyramid(self) -> bool:
        return self.encoder.has_pyramid

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.encoder.forward_pyramid(self._fill(x))

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The inner encoder's layer groups, input first (the first-layers adapter mode)."""
        groups = getattr(self.encoder, "layer_groups", None)
        if not callable(groups):
            raise EncoderError(f"{type(self.encoder).__name__} has no layer groups")
        return groups()


def set_sensor_dropout(encoder: nn.Module, probability: float) -> None:
    """Set the sensor dropout of every fusion module inside ``encoder`` (acts in training mode only)."""
    for module in encoder.modules():
        if isinstance(module, (ModalityStems, LateFusionEncoder, EarlyFusionEncoder)):
            module.sensor_dropout = probability
