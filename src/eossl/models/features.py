"""Pooled features of an encoder over many images, in batches, in eval mode (frozen-feature protocols,
health monitoring).

Data-parallel when this process is one of several (``torch.distributed`` initialised with a world of more
than one, as under Lightning's DDP, ``torchrun`` or ``srun``): process ``r`` of ``W`` encodes batches
``r, r + W, r + 2W, ...`` and the features are gathered, so every process returns the features of all
batches in their original order, the same as one process would.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
import torch.distributed as dist

from eossl.data.normalize import BandNormalizer, normalize_input
from eossl.models.interface import Encoder
from eossl.training import bf16_autocast


def _world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _my_batches(batches: Iterable[torch.Tensor], rank: int, world: int) -> Iterator[torch.Tensor]:
    """Every ``world``-th batch, starting at ``rank``."""
    return (images for i, images in enumerate(batches) if i % world == rank)


def _gather_in_order(chunks: list[torch.Tensor], num_features: int, device: torch.device) -> torch.Tensor:
    """The chunks of every process (process ``r`` holding batches ``r::W``) as one tensor in batch order."""
    world = dist.get_world_size()
    sizes: list[list[int]] = [[] for _ in range(world)]
    dist.all_gather_object(sizes, [len(c) for c in chunks])
    mine = torch.cat(chunks) if chunks else torch.zeros(0, num_features)
    longest = max(sum(s) for s in sizes)
    # NCCL gathers CUDA tensors only; gloo gathers CPU ones
    where = device if dist.get_backend() == "nccl" else torch.device("cpu")
    padded = torch.zeros(longest, num_features, device=where)
    padded[: len(mine)] = mine.to(where)
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    pieces = [list(part.cpu()[: sum(s)].split(s)) if s else [] for part, s in zip(parts, sizes, strict=True)]
    ordered = [pieces[i % world][i // world] for i in range(sum(len(s) for s in sizes))]
    return torch.cat(ordered) if ordered else torch.zeros(0, num_features)


@torch.no_grad()
def encode_batches(
    encoder: Encoder, normalizer: BandNormalizer, modality: str, batches: Iterable[torch.Tensor], device: torch.device
) -> torch.Tensor:
    """Pooled features ``[N, num_features]`` (float32, CPU) of image batches in physical units.

    Under a process group every process must call this with the same batches (it encodes its share and
    gathers the rest, see the module docstring).
    """
    encoder = encoder.to(device).eval()
    normalizer = normalizer.to(device)
    rank, world = _world()
    chunks = []
    for images in _my_batches(batches, rank, world):
        x = normalize_input(normalizer, modality, images.to(device), fill_missing=not encoder.handles_missing)
        with bf16_autocast(device):
            chunks.append(encoder(x).float().cpu())
    if world > 1:
        return _gather_in_order(chunks, encoder.num_features, device)
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
