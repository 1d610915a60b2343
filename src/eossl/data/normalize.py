"""Band normalisation with the store's statistics, and the missing-value policy.

Policy for NaN/inf and nodata in input bands: such values are filled with the band's mean (0 after
normalisation), counted per modality, logged during training and reported in the run summary. They
never reach the encoder or the loss as NaN.
"""

from __future__ import annotations

import torch
from torch import nn

from eossl.errors import StoreError


class BandNormalizer(nn.Module):
    """Per-band standardisation of each modality; tracks how many values it had to fill."""

    def __init__(self, stats: dict[str, dict[str, list[float]]], modalities: list[str]) -> None:
        super().__init__()
        self.modalities = list(modalities)
        for name in self.modalities:
            if name not in stats:
                raise StoreError(f"no normalisation statistics for modality '{name}' (have: {', '.join(stats)})")
            self.register_buffer(f"{name}_mean", torch.tensor(stats[name]["mean"]).view(-1, 1, 1))
            self.register_buffer(f"{name}_std", torch.tensor(stats[name]["std"]).view(-1, 1, 1))
        self.filled: dict[str, int] = {name: 0 for name in self.modalities}

    def fill_invalid(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Replace non-finite values by the band mean (physical units) and count them."""
        out = dict(batch)
        for name in self.modalities:
            x = batch[name]
            bad = ~torch.isfinite(x)
            count = int(bad.sum())
            if count:
                self.filled[name] += count
                out[name] = torch.where(bad, getattr(self, f"{name}_mean").to(x.dtype).expand_as(x), x)
        return out

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = dict(batch)
        for name in self.modalities:
            out[name] = (batch[name] - getattr(self, f"{name}_mean")) / getattr(self, f"{name}_std")
        return out


def normalize_input(
    normalizer: BandNormalizer, modality: str, x: torch.Tensor, fill_missing: bool = True
) -> torch.Tensor:
    """``x`` (physical units) normalised with ``normalizer``'s statistics of ``modality``.

    Non-finite values are filled with band means first unless ``fill_missing`` is False: encoders that
    handle missing modalities themselves (``Encoder.handles_missing``, the fusion encoders of
    :mod:`eossl.models.fusion`) need the NaN that mark a missing sensor, and fill the rest themselves.
    """
    batch = {modality: x}
    if fill_missing:
        batch = normalizer.fill_invalid(batch)
    return normalizer(batch)[modality]
