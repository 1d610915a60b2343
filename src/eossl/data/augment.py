"""Batched, multispectral-safe augmentation applied on the training device.

Spatial operations (random resized crop, flips, 90-degree rotations) use the same parameters for every
modality of a sample; continuous modalities are resampled bilinearly, categorical ones with nearest
neighbour. Radiometric operations depend on the modality kind and stay physically plausible:
optical bands get a per-sample illumination gain, small per-band gains, contrast around the band mean,
additive haze and Gaussian noise (no hue/saturation: they are defined only for RGB); SAR gets a dB
offset and noise; elevation and categorical layers are only moved, never altered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from kornia.geometry.transform import crop_and_resize
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from eossl.data.modality import Modality


class AugmentConfig(BaseModel):
    """Strength of each augmentation; 0 or False switches it off."""

    model_config = ConfigDict(extra="forbid")
    crop_scale: tuple[float, float] = (0.35, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 1.333)
    flip: bool = True
    rotate90: bool = True
    brightness: float = 0.4
    band_gain: float = 0.12
    contrast: float = 0.3
    haze: float = 0.04
    noise_std: float = 0.01
    sar_offset_db: float = 1.5
    sar_noise_db: float = 0.5
    # multi-crop (DINO, SwAV): extra small views of a small part of the patch
    local_views: int = Field(0, ge=0)
    local_crop_size: int = Field(16, ge=4)
    local_crop_scale: tuple[float, float] = (0.05, 0.35)


T = TypeVar("T")


def apply_alike(fn: Callable[[torch.Tensor], T], *inputs: torch.Tensor) -> list[T]:
    """``[fn(x) for x in inputs]`` with every call starting from the same random state.

    A random augmentation thus draws identical parameters (crop, flips, gains, noise) for each input of
    the same shape, e.g. "the same augmentation of two seasons". The seed is drawn from torch's global
    generator (runs stay reproducible); the CPU generator and the CUDA generator of the inputs' device
    are restored after each call.
    """
    device = inputs[0].device
    if any(x.device != device for x in inputs):
        raise ValueError(f"apply_alike: inputs must share one device, got {[str(x.device) for x in inputs]}")
    seed = int(torch.randint(2**62, ()))
    cuda = [device] if device.type == "cuda" else []
    outputs = []
    for x in inputs:
        with torch.random.fork_rng(devices=cuda):
            torch.default_generator.manual_seed(seed)
            if cuda:
                with torch.cuda.device(device):
                    torch.cuda.manual_seed(seed)
            outputs.append(fn(x))
    return outputs


def _uniform(n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    return torch.empty(n, device=device).uniform_(low, high)


class MultiModalAugment(nn.Module):
    """Draw one random transform per sample and apply it to every modality of the batch."""

    def __init__(self, modalities: dict[str, Modality], config: AugmentConfig | None = None) -> None:
        super().__init__()
        self.modalities = modalities
        self.config = config or AugmentConfig()

    def _crop_boxes(self, n: int, size: int, scale: tuple[float, float], device: torch.device) -> torch.Tensor:
        cfg = self.config
        area = _uniform(n, *scale, device) * size * size
        log_ratio = _uniform(n, *torch.tensor(cfg.crop_ratio).log().tolist(), device)
        ratio = log_ratio.exp()
        w = (area * ratio).sqrt().clamp(2, size)
        h = (area / ratio).sqrt().clamp(2, size)
        x0 = torch.rand(n, device=device) * (size - w)
        y0 = torch.rand(n, device=device) * (size - h)
        x1, y1 = x0 + w - 1, y0 + h - 1
        return torch.stack(
            [
                torch.stack([x0, y0], -1),
                torch.stack([x1, y0], -1),
                torch.stack([x1, y1], -1),
                torch.stack([x0, y1], -1),
            ],
            dim=1,
        )

    def _spatial(self, x: torch.Tensor, params: dict, categorical: bool, out_size: int) -> torch.Tensor:
        size = out_size
        if "boxes" in params:
            mode = "nearest" if categorical else "bilinear"
            x = crop_and_resize(x.float(), params["boxes"], (size, size), mode=mode, align_corners=True).to(x.dtype)
        if "hflip" in params:
            x = torch.where(params["hflip"].view(-1, 1, 1, 1), x.flip(-1), x)
        if "vflip" in params:
            x = torch.where(params["vflip"].view(-1, 1, 1, 1), x.flip(-2), x)
        if "rot" in params:
            out = x.clone()
            for k in (1, 2, 3):
                sel = params["rot"] == k
                if sel.any():
                    out[sel] = torch.rot90(x[sel], k, dims=(-2, -1))
            x = out
        return x

    def _radiometric(self, x: torch.Tensor, modality: Modality) -> torch.Tensor:
        cfg, n, device = self.config, x.shape[0], x.device
        if modality.kind == "optical":
            gain = _uniform(n, 1 - cfg.brightness, 1 + cfg.brightness, device).view(-1, 1, 1, 1)
            gain = gain * _uniform(n * x.shape[1], 1 - cfg.band_gain, 1 + cfg.band_gain, device).view(n, -1, 1, 1)
            mean = x.mean(dim=(-2, -1), keepdim=True)
            contrast = _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, device).view(-1, 1, 1, 1)
            x = (mean + (x - mean) * contrast) * gain
            if cfg.haze > 0 and modality.wavelengths_nm is not None:
                wl = torch.tensor(modality.wavelengths_nm, device=device, dtype=x.dtype)
                haze = torch.rand(n, 1, 1, 1, device=device) * cfg.haze
                x = x + haze * (490.0 / wl).pow(1.5).view(1, -1, 1, 1)
            return x + torch.randn_like(x) * cfg.noise_std
        if modality.kind == "sar":
            offset = _uniform(n, -cfg.sar_offset_db, cfg.sar_offset_db, device).view(-1, 1, 1, 1)
            return x + offset + torch.randn_like(x) * cfg.sar_noise_db
        return x

    @torch.no_grad()
    def forward(self, batch: dict[str, torch.Tensor], local: bool = False) -> dict[str, torch.Tensor]:
        """Augment every image-like entry of ``batch`` whose key is a known modality.

        ``local`` draws a multi-crop local view: a crop of ``local_crop_scale`` of the area, resized
        to ``local_crop_size`` pixels, instead of a global view at the input size.
        """
        keys = [k for k in batch if k in self.modalities]
        if not keys:
            return batch
        ref = batch[keys[0]]
        n, size, device = ref.shape[0], ref.shape[-1], ref.device
        scale = self.config.local_crop_scale if local else self.config.crop_scale
        out_size = min(self.config.local_crop_size, size) if local else size
        params: dict[str, torch.Tensor] = {}
        if scale[0] < 1.0 or out_size != size:
            params["boxes"] = self._crop_boxes(n, size, scale, device)
        if self.config.flip:
            params["hflip"] = torch.rand(n, device=device) < 0.5
            params["vflip"] = torch.rand(n, device=device) < 0.5
        if self.config.rotate90:
            params["rot"] = torch.randint(0, 4, (n,), device=device)
        out = dict(batch)
        for key in keys:
            modality = self.modalities[key]
            x = self._spatial(batch[key], params, categorical=not modality.continuous, out_size=out_size)
            out[key] = self._radiometric(x, modality) if modality.continuous else x
        return out
