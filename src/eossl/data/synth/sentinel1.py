"""Sentinel-1 GRD rendering: VV/VH backscatter (dB) by class, terrain effect, multiplicative speckle."""

from __future__ import annotations

import numpy as np

from eossl.data.synth import landcover as lc
from eossl.data.synth.noise import smooth_noise

# Mean backscatter (dB) per class, columns VV, VH (C-band, ~35 deg incidence).
BACKSCATTER_DB = np.array(
    [
        [-7.5, -13.0],
        [-9.5, -16.0],
        [-11.0, -18.0],
        [-10.5, -17.0],
        [-2.0, -9.0],
        [-14.0, -22.0],
        [-11.0, -19.0],
        [-21.0, -28.0],
        [-13.0, -20.0],
        [-6.5, -12.5],
        [-12.0, -19.5],
    ],
    dtype=np.float32,
)
INCIDENCE_DEG = 35.0
EQUIVALENT_LOOKS = 4.4


def render_sentinel1(
    rng: np.random.Generator,
    cover: lc.LandCover,
    slope: np.ndarray,
    aspect: np.ndarray,
    snowy_season: np.ndarray,
) -> np.ndarray:
    """[N, 2, H, W] VV/VH in dB. ``snowy_season`` [N] marks wet-snow scenes (lower backscatter)."""
    classes = cover.classes.astype(np.int64)
    n, size, _ = classes.shape
    db = BACKSCATTER_DB[classes] + rng.normal(0, 0.8, (n, lc.NUM_CLASSES, 2))[np.arange(n)[:, None, None], classes]
    # Crop parcels differ in roughness and moisture; buildings give double bounce, streets are smooth.
    parcel_offset = rng.normal(0, 2.0, (n, 64 * 64))[np.arange(n)[:, None, None], np.maximum(cover.parcel_id, 0)]
    db += np.where(classes == lc.CROP, parcel_offset, 0.0)[..., None]
    db += np.where((classes == lc.BUILT) & ~cover.street, 3.0, np.where(cover.street, -6.0, 0.0))[..., None]
    # Scene-wide soil moisture / wind over water.
    db += rng.normal(0, 1.0, (n, 1, 1, 1))
    db += np.where(classes == lc.WATER, rng.normal(0, 2.0, (n, 1, 1)), 0.0)[..., None]
    db -= 3.0 * snowy_season[:, None, None, None]
    # Terrain: slopes facing the sensor (looking east, range direction +x) return more energy.
    facing = np.degrees(slope * np.sin(aspect))  # positive when the slope faces west, towards the sensor
    db += np.clip(0.35 * facing, -8, 8)[..., None]
    db += 0.5 * smooth_noise(rng, n, size, 2.0)[..., None]
    linear = 10 ** (db / 10) * rng.gamma(EQUIVALENT_LOOKS, 1 / EQUIVALENT_LOOKS, db.shape)
    return np.moveaxis(10 * np.log10(np.maximum(linear, 1e-5)), -1, 1).astype(np.float32)
