"""Fake GeoTIFF folders in the layouts users have, in miniature (rasterio-written, UTM 33N, 10 m):

- ``write_per_sample``: ``images/<name>.tif``, one 12-band uint16 Sentinel-2 L2A GeoTIFF per sample
  (bands B1..B12 with B8A, as SSL4EO-S12 and most exports hold them);
- ``write_per_band``: one single-band file per band, a sample a sub-folder
  ``<sample>/<sample>_B01.tif`` (BigEarthNet's naming) or ``<sample>_B01.tif`` side by side, at 10 m
  (12 x 12 px), 20 m (6 x 6) and 60 m (2 x 2) as the Sentinel-2 bands are;
- ``write_tile``: one large tile with a nodata corner and its ``<stem>_mask.tif`` class raster at 20 m;
- ``write_csv``: a labels or metadata CSV.

Pixel values encode where they come from (band, sample, row, column) so tests can check band order,
resampling and patch windows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from eossl.data.importers.raster import write_geotiff
from eossl.data.modality import S2_BANDS, S2_GSD

ORIGIN = (500000.0, 5000000.0)  # UTM 33N: about 45.1 N, 15 E
CRS = "EPSG:32633"
PADDED = tuple(b if b in ("B8A", "B11", "B12") else f"B{int(b[1:]):02d}" for b in S2_BANDS)
"""The band names in file names: B01, ..., B09, B8A, B11, B12 (Sentinel-2 products zero-pad them)."""


def sample_values(index: int, size: int = 16, bands: int = 12) -> np.ndarray:
    """``[bands, size, size]`` uint16: 1000 * band + 100 * sample + row + column (all valid, > 0)."""
    grid = np.add.outer(np.arange(size), np.arange(size))
    return np.stack([1000 * (b + 1) + 100 * index + grid for b in range(bands)]).astype(np.uint16)


def write_per_sample(folder: Path, names: list[str], size: int = 16) -> dict[str, np.ndarray]:
    """``folder/images/<name>.tif`` for each name (each 1 km apart); returns the arrays by name."""
    out = {}
    for i, name in enumerate(names):
        out[name] = sample_values(i, size)
        write_geotiff(folder / "images" / f"{name}.tif", out[name], crs=CRS, origin=(ORIGIN[0] + 1000 * i, ORIGIN[1]))
    return out


def band_values(band: int, sample: int, size10: int = 12) -> np.ndarray:
    """One band at its own resolution: ``100 * band + 10 * sample`` plus a ramp of 10 per pixel along x."""
    n = size10 * 10 // int(S2_GSD[band])
    ramp = np.broadcast_to(10 * np.arange(n)[None, :], (n, n))
    return (1000 + 100 * band + 10 * sample + ramp).astype(np.uint16)


def write_per_band(folder: Path, samples: list[str], *, subfolders: bool = True, skip: tuple = ()) -> Path:
    """Per-band files of ``samples`` (``skip``: ``(sample, band_name)`` files left out), at 10/20/60 m."""
    for s, name in enumerate(samples):
        base = folder / name if subfolders else folder
        for b, band in enumerate(PADDED):
            if (name, band) in skip:
                continue
            origin = (ORIGIN[0] + 2000 * s, ORIGIN[1])
            write_geotiff(base / f"{name}_{band}.tif", band_values(b, s), crs=CRS, origin=origin, gsd=S2_GSD[b])
    return folder


def write_tile(folder: Path, name: str, height: int, width: int, nodata_corner: int) -> tuple[np.ndarray, np.ndarray]:
    """A 12-band tile (nodata tag 0) with a ``nodata_corner`` square of 0 at its top left, and its class
    raster ``<name>_mask.tif`` at 20 m (half the size, the same extent) of classes (row + col) % 3;
    returns the tile and the mask on the tile's 10 m grid."""
    values = np.stack([1 + b + np.add.outer(np.arange(height), np.arange(width)) for b in range(12)]).astype(np.uint16)
    values[:, :nodata_corner, :nodata_corner] = 0
    mask20 = (np.add.outer(np.arange(height // 2), np.arange(width // 2)) % 3).astype(np.uint8)
    write_geotiff(folder / f"{name}.tif", values, crs=CRS, origin=ORIGIN, nodata=0)
    write_geotiff(folder / f"{name}_mask.tif", mask20, crs=CRS, origin=ORIGIN, gsd=20.0)
    return values, mask20.repeat(2, axis=0).repeat(2, axis=1)


def write_csv(path: Path, rows: list[dict]) -> Path:
    """A CSV of ``rows`` (the labels or metadata file of a folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path
