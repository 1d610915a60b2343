"""The typed encoder interface: what every encoder eossl trains, evaluates, fuses or exports provides.

An :class:`Encoder` takes a band stack ``[B, in_chans, H, W]`` (normalised) and gives

- pooled features ``[B, num_features]`` (``forward``),
- the feature pyramid, one map per level, finest first (``forward_pyramid``) where it has one
  (:attr:`has_pyramid`), and both from one pass (``forward_pyramid_and_pooled``),
- the channels of each pyramid level for an input size (``feature_channels``).

``handles_missing`` says whether the encoder itself deals with NaN (a missing modality of a fused
input): True for the fusion encoders of :mod:`eossl.models.fusion`, which tell present from absent
sensors; other encoders get their non-finite values filled before they see them
(:func:`eossl.data.normalize.normalize_input`). Implementations: :class:`eossl.models.encoders.TimmEncoder`
(any timm backbone), :class:`eossl.models.adapters.AdaptedEncoder`, the fusion encoders, and the
per-modality views of cross-modal checkpoints.
"""

from __future__ import annotations

import torch
from torch import nn

from eossl.errors import EncoderError


class Encoder(nn.Module):
    """Base class of every encoder (see the module docstring). Subclasses set ``in_chans`` and
    ``num_features`` and implement ``forward``; dense tasks need ``forward_pyramid``."""

    in_chans: int
    num_features: int
    handles_missing: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def has_pyramid(self) -> bool:
        """Whether :meth:`forward_pyramid` gives feature maps (dense decoders need them)."""
        return False

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps of every level, finest first (CNNs); ViT tokens come back as ``[B, C, h, w]`` grids."""
        raise EncoderError(f"encoder {type(self).__name__} gives no feature pyramid: it cannot feed a dense decoder")

    def forward_pyramid_and_pooled(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The pyramid and the pooled features of ``x``; subclasses give both from one pass where they can."""
        return self.forward_pyramid(x), self(x)

    def feature_channels(self, image_size: int) -> list[int]:
        """Channels of each pyramid level for ``image_size`` inputs, probed with one small forward pass."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                device = next(self.parameters()).device
                probe = torch.zeros(1, self.in_chans, image_size, image_size, device=device)
                return [int(f.shape[1]) for f in self.forward_pyramid(probe)]
        finally:
            self.train(was_training)

    def check_bands(self, x: torch.Tensor, modality: str) -> None:
        """Raise a clear error when a batch's band count is not the one the encoder was built for."""
        if x.shape[1] != self.in_chans:
            raise EncoderError(
                f"modality '{modality}' has {x.shape[1]} bands but the encoder was built for "
                f"{self.in_chans} input bands"
            )
