"""Frozen features of every split, computed batch by batch and cached on disk; the image-statistics
baseline; BatchNorm re-estimation for random and external inits."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

from eossl.data.normalize import BandNormalizer, normalize_input
from eossl.io import atomic_path
from eossl.models.interface import Encoder

IMAGE_STAT_PERCENTILES = (0.1, 0.5, 0.9)


@torch.no_grad()
def recalibrate_batchnorm(
    encoder: Encoder, normalizer: BandNormalizer, modality: str, batches: Iterable[torch.Tensor], device: torch.device
) -> None:
    """Re-estimate BatchNorm running statistics on unlabelled image batches (a fair random-init baseline)."""
    bns = [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over all batches
    encoder.to(device).train()
    normalizer = normalizer.to(device)
    for images in batches:
        encoder(normalize_input(normalizer, modality, images.to(device), fill_missing=not encoder.handles_missing))
    encoder.eval()


def image_statistics(images: torch.Tensor) -> torch.Tensor:
    """Per-band mean, std and 10/50/90th percentiles of each image: the 'image statistics' baseline."""
    flat = images.flatten(2).float()
    flat = torch.where(torch.isfinite(flat), flat, flat.nanmean(dim=2, keepdim=True))
    quantiles = torch.quantile(flat, torch.tensor(IMAGE_STAT_PERCENTILES), dim=2)  # [Q, N, C]
    return torch.cat([flat.mean(2), flat.std(2), *quantiles], dim=1)


def cache_key(*parts: object) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:16]


def save_atomic(value: object, path: Path) -> None:
    """``torch.save`` through a temporary file, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(value, tmp)


def cached(path: Path, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Load a tensor from ``path`` (tensors only, never code) or compute and save it atomically.
    A cache file that cannot be read is recomputed."""
    if path.exists():
        try:
            value = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(value, torch.Tensor):
                return value
        except Exception:  # a damaged or foreign cache file: recompute it
            pass
    value = compute()
    save_atomic(value, path)
    return value
