"""Encoders for change detection on two dates of one place (Daudt et al. 2018, "Fully convolutional
Siamese networks for change detection").

Input convention: the two dates stacked, ``[B, 2C, H, W]`` (date 1 first), as any combination of
modalities is stacked. The three architectures of the paper:

- **early fusion** (FC-EF): one encoder of ``2C`` bands sees both dates at once; built fresh as an
  ordinary encoder, or from a pretrained single-date encoder by :func:`widen_first_conv` (its first
  convolution repeated for both dates and halved, so two identical dates give the pretrained
  activations);
- **Siamese, feature difference** (FC-Siam-diff, :class:`SiameseEncoder` ``diff``): one shared
  encoder per date, every pyramid level (and the pooled features) fused as ``|f1 - f2|``;
- **Siamese, concatenation** (FC-Siam-conc, ``concat``): the same, levels concatenated ``[f1, f2]``.

All three are :class:`~eossl.models.interface.Encoder` s, so every decoder and protocol (frozen,
fine-tune, adapter) serves change detection unchanged; the pooled features serve image-level change.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import nn

from eossl.errors import EncoderError
from eossl.models.encoders import TimmEncoder
from eossl.models.interface import Encoder

SiameseFusion = Literal["diff", "concat"]


class SiameseEncoder(Encoder):
    """One shared ``encoder`` applied to each date of a ``[B, 2C, H, W]`` stack; features fused by
    ``fusion`` (``diff``: absolute difference, ``concat``: date 1 then date 2)."""

    def __init__(self, encoder: Encoder, fusion: SiameseFusion) -> None:
        super().__init__()
        if fusion not in ("diff", "concat"):
            raise EncoderError(f"Siamese fusion must be 'diff' or 'concat', got '{fusion}'")
        self.encoder, self.fusion = encoder, fusion
        self.in_chans = 2 * encoder.in_chans
        self.num_features = encoder.num_features * (2 if fusion == "concat" else 1)
        self.handles_missing = encoder.handles_missing

    def _dates(self, x: torch.Tensor) -> torch.Tensor:
        """The two dates as one batch of ``2B`` single-date images (one encoder pass for both)."""
        if x.shape[1] != self.in_chans:
            raise EncoderError(
                f"change input has {x.shape[1]} bands; the Siamese encoder takes two dates of "
                f"{self.encoder.in_chans} bands ({self.in_chans})"
            )
        before, after = x.split(self.encoder.in_chans, dim=1)
        return torch.cat([before, after])

    def _fuse(self, features: torch.Tensor) -> torch.Tensor:
        first, second = features.chunk(2)
        return (first - second).abs() if self.fusion == "diff" else torch.cat([first, second], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fuse(self.encoder(self._dates(x)))

    @property
    def has_pyramid(self) -> bool:
        return self.encoder.has_pyramid

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self._fuse(level) for level in self.encoder.forward_pyramid(self._dates(x))]

    def forward_pyramid_and_pooled(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        pyramid, pooled = self.encoder.forward_pyramid_and_pooled(self._dates(x))
        return [self._fuse(level) for level in pyramid], self._fuse(pooled)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The shared encoder's layer groups (the first-layers adapter mode)."""
        groups = getattr(self.encoder, "layer_groups", None)
        if groups is None:
            raise EncoderError(f"{type(self.encoder).__name__} has no layer groups")
        return groups()


def widen_first_conv(encoder: Encoder, copies: int = 2) -> Encoder:
    """A copy of a single-date timm ``encoder`` taking ``copies`` stacked dates: its first convolution's
    weights repeated for every date and divided by ``copies`` (identical dates give the original
    activations), the rest unchanged. Early fusion from a pretrained single-date encoder."""
    if not isinstance(encoder, TimmEncoder):
        raise EncoderError(
            f"early fusion widens a timm encoder's first convolution; {type(encoder).__name__} has none "
            "(use a Siamese fusion mode: siam-diff or siam-conc)"
        )
    widened = copy.deepcopy(encoder)
    name = widened.first_conv
    conv: nn.Conv2d = widened.model.get_submodule(name)
    new = nn.Conv2d(
        conv.in_channels * copies, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, conv.bias is not None,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)  # fmt: skip
    with torch.no_grad():
        new.weight.copy_(conv.weight.repeat(1, copies, 1, 1) / copies)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    parent, _, leaf = name.rpartition(".")
    setattr(widened.model.get_submodule(parent) if parent else widened.model, leaf, new)
    widened.in_chans = encoder.in_chans * copies
    return widened
