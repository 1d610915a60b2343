"""Pooled features of an encoder over many images, in batches, in eval mode (frozen-feature protocols,
health monitoring)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from eossl.data.normalize import BandNormalizer, normalize_input
from eossl.models.interface import Encoder
from eossl.training import bf16_autocast


@torch.no_grad()
def encode_batches(
    encoder: Encoder, normalizer: BandNormalizer, modality: str, batches: Iterable[torch.Tensor], device: torch.device
) -> torch.Tensor:
    """Pooled features ``[N, num_features]`` (float32, CPU) of image batches in physical units."""
    encoder = encoder.to(device).eval()
    normalizer = normalizer.to(device)
    chunks = []
    for images in batches:
        x = normalize_input(normalizer, modality, images.to(device), fill_missing=not encoder.handles_missing)
        with bf16_autocast(device):
            chunks.append(encoder(x).float().cpu())
    return torch.cat(chunks) if chunks else torch.zeros(0, encoder.num_features)


def encode(
    encoder: Encoder,
    normalizer: BandNormalizer,
    modality: str,
    images: torch.Tensor,
    device: torch.device,
    batch_size: int = 512,
) -> torch.Tensor:
    """Pooled encoder features of ``images`` (physical units, [N, C, H, W]) in eval mode."""
    return encode_batches(
        encoder, normalizer, modality, (images[i : i + batch_size] for i in range(0, len(images), batch_size)), device
    )
