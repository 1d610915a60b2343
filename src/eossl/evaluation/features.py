"""Frozen features, computed once per encoder and split and cached on disk."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from eossl.data.normalize import BandNormalizer, normalize_input
from eossl.io import atomic_path
from eossl.training import bf16_autocast

IMAGE_STAT_PERCENTILES = (0.1, 0.5, 0.9)


@torch.no_grad()
def encode(
    encoder: nn.Module,
    normalizer: BandNormalizer,
    modality: str,
    images: torch.Tensor,
    device: torch.device,
    batch_size: int = 512,
) -> torch.Tensor:
    """Pooled encoder features of ``images`` (physical units, [N, C, H, W]) in eval mode."""
    encoder = encoder.to(device).eval()
    normalizer = normalizer.to(device)
    chunks = []
    for start in range(0, len(images), batch_size):
        x = normalize_input(normalizer, modality, images[start : start + batch_size].to(device), encoder)
        with bf16_autocast(device):
            chunks.append(encoder(x).float().cpu())
    return torch.cat(chunks)


@torch.no_grad()
def recalibrate_batchnorm(
    encoder: nn.Module,
    normalizer: BandNormalizer,
    modality: str,
    images: torch.Tensor,
    device: torch.device,
    batch_size: int = 256,
) -> None:
    """Re-estimate BatchNorm running statistics on unlabelled images (a fair random-init baseline)."""
    bns = [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over all batches
    encoder.to(device).train()
    for start in range(0, len(images), batch_size):
        encoder(normalize_input(normalizer, modality, images[start : start + batch_size].to(device), encoder))
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


def cached(path: Path, compute) -> torch.Tensor:
    """Load a tensor from ``path`` or compute and save it atomically."""
    if path.exists():
        return torch.load(path)
    value = compute()
    save_atomic(value, path)
    return value
