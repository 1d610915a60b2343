"""Shared Lightning plumbing: device/precision choice and trainer construction."""

from __future__ import annotations

import torch


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """``auto`` -> bf16 autocast on CUDA devices that support it, full fp32 elsewhere (CPU bf16 is slow)."""
    if precision != "auto":
        return precision
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
