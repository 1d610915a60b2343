"""Locations, elevation models and terrain geometry (slope, aspect, hillshade)."""

from __future__ import annotations

import numpy as np

from eossl.data.synth.noise import fractal_noise

PIXEL_SIZE_M = 10.0


def sample_locations(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Latitude/longitude drawn uniformly over the land-like band 56S..78N (area-preserving)."""
    lat = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-56)), np.sin(np.radians(78)), n)))
    lon = rng.uniform(-180.0, 180.0, n)
    return lat, lon


def regional_elevation(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Smooth, deterministic 'continental' elevation (m) so nearby locations share mountains."""
    la, lo = np.radians(lat), np.radians(lon)
    ridges = np.sin(3 * lo + 0.5) * np.cos(4 * la - 0.3) + 0.6 * np.sin(7 * lo - 2 * la + 1.0)
    return np.clip(1400.0 * ridges + 300.0, 0.0, 4200.0)


def sample_dem(rng: np.random.Generator, base_elevation: np.ndarray, size: int) -> np.ndarray:
    """[N, H, W] elevation in metres: regional level plus relief that grows with altitude."""
    relief = 15.0 + 0.08 * base_elevation
    return base_elevation[:, None, None] + relief[:, None, None] * fractal_noise(rng, len(base_elevation), size)


def slope_aspect(dem: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slope (radians) and aspect (radians, clockwise from north / image up) of each pixel."""
    dz_dy, dz_dx = np.gradient(dem, PIXEL_SIZE_M, axis=(1, 2))
    slope = np.arctan(np.hypot(dz_dx, dz_dy))
    aspect = np.arctan2(dz_dx, -dz_dy)
    return slope.astype(np.float32), aspect.astype(np.float32)


def hillshade(slope: np.ndarray, aspect: np.ndarray, sun_elevation: np.ndarray, sun_azimuth: float = 2.36):
    """Relative direct illumination of each pixel (1 on flat ground) for a sun per scene ([N] radians)."""
    e = sun_elevation[:, None, None]
    cos_i = np.sin(e) * np.cos(slope) + np.cos(e) * np.sin(slope) * np.cos(sun_azimuth - aspect)
    return np.clip(cos_i / np.sin(e), 0.2, 1.8).astype(np.float32)
