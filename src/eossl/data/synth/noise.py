"""Smooth random fields, the building block of every synthetic texture."""

from __future__ import annotations

import numpy as np


def smooth_noise(rng: np.random.Generator, n: int, size: int, sigma: float | np.ndarray) -> np.ndarray:
    """``n`` Gaussian-filtered white-noise fields of ``size x size``, each zero-mean and unit-std.

    ``sigma`` (pixels) is a scalar or one value per field. Fields are cut from a canvas 1.5x larger so
    that the FFT's wrap-around does not make opposite edges correlated.
    """
    canvas = size + size // 2
    white = rng.standard_normal((n, canvas, canvas), dtype=np.float32)
    freq = np.fft.fftfreq(canvas).astype(np.float32)
    freq2 = freq[:, None] ** 2 + freq[None, :] ** 2
    sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float32), (n,)).reshape(n, 1, 1)
    transfer = np.exp(-2.0 * np.pi**2 * sigma**2 * freq2[None])
    field = np.fft.ifft2(np.fft.fft2(white) * transfer).real[:, :size, :size].astype(np.float32)
    field -= field.mean(axis=(1, 2), keepdims=True)
    field /= field.std(axis=(1, 2), keepdims=True) + 1e-6
    return field


def fractal_noise(rng: np.random.Generator, n: int, size: int, scales=(16.0, 8.0, 4.0, 2.0)) -> np.ndarray:
    """Sum of smooth fields with halving amplitude per octave (terrain-like), unit std."""
    field = sum(0.5**i * smooth_noise(rng, n, size, s) for i, s in enumerate(scales))
    return field / field.std(axis=(1, 2), keepdims=True)
