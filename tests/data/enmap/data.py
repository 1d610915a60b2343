"""Fake EnMAP data in the real layouts: an L2A product folder (``...-SPECTRAL_IMAGE.TIF``, 224 bands int16,
reflectance x 10000, nodata -32768, UTM; ``...-METADATA.XML`` with ``specific/bandCharacterisation``) and a
SpectralEarth folder (``enmap/<patch id>/<tile id>.tif``, 202 bands int16)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eossl.data.importers.enmap import ENMAP_NOMINAL_NM
from eossl.data.importers.raster import write_geotiff

PRODUCT = "ENMAP01-____L2A-DT0000001867_20220724T104526Z_008_V010302_20230628T165614Z"
WAVELENGTH_SHIFT = 0.37
"""The fake XML's centre wavelengths are the nominal ones plus this, so tests see which were used."""


def pixel_values(bands: int, size: int, seed: int = 0) -> np.ndarray:
    """``[bands, size, size]`` int16 reflectance x 10000: ``100 * band + row * size + col`` plus noise."""
    rng = np.random.default_rng(seed)
    b, r, c = np.meshgrid(np.arange(bands), np.arange(size), np.arange(size), indexing="ij")
    return (100 * b + r * size + c + rng.integers(0, 3, b.shape)).astype(np.int16)


def _xml(bands: int) -> str:
    rows = "\n".join(
        f'        <bandID number="{n}">\n'
        f"          <wavelengthCenterOfBand>{ENMAP_NOMINAL_NM[n - 1] + WAVELENGTH_SHIFT:.3f}</wavelengthCenterOfBand>\n"
        f"          <FWHMOfBand>8.5</FWHMOfBand>\n          <GainOfBand>1.0E-4</GainOfBand>\n"
        f"          <OffsetOfBand>0.0</OffsetOfBand>\n        </bandID>"
        for n in range(1, bands + 1)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<level_X>\n  <metadata><name>' + PRODUCT + "</name></metadata>\n"
        "  <specific>\n    <code>L2A</code>\n    <bandCharacterisation>\n" + rows + "\n    </bandCharacterisation>\n"
        "  </specific>\n</level_X>\n"
    )


def write_l2a_product(folder: Path, size: int = 40, bands: int = 224) -> Path:
    """One L2A product folder; its top-left 16 x 16 pixels are nodata. Returns the product folder."""
    product = folder / PRODUCT
    values = pixel_values(bands, size)
    values[:, :16, :16] = -32768
    write_geotiff(product / f"{PRODUCT}-SPECTRAL_IMAGE.TIF", values, crs="EPSG:32633", gsd=30.0, nodata=-32768)
    (product / f"{PRODUCT}-METADATA.XML").write_text(_xml(bands), encoding="utf-8")
    write_geotiff(product / f"{PRODUCT}-QL_QUALITY_CLOUD.TIF", np.zeros((1, size, size), np.uint8), gsd=30.0)
    return product


SPECTRALEARTH_TILES = {
    "1001": ["ENMAP01-____L2A-DT0000004950_20221103T102438Z_001", "ENMAP01-____L2A-DT0000012345_20230512T103001Z_002"],
    "1002": ["ENMAP01-____L2A-DT0000006000_20220901T101500Z_004"],
    "1003": ["tile_7"],
}


def write_spectralearth(folder: Path, size: int = 16, bands: int = 202) -> Path:
    """``folder/enmap/<patch id>/<tile id>.tif`` for :data:`SPECTRALEARTH_TILES`; returns ``folder``."""
    for i, (patch, tiles) in enumerate(SPECTRALEARTH_TILES.items()):
        for j, tile in enumerate(tiles):
            origin = (400000.0 + 10000 * i, 5800000.0)
            write_geotiff(folder / "enmap" / patch / f"{tile}.tif", pixel_values(bands, size, seed=10 * i + j),
                          crs="EPSG:32632", origin=origin, gsd=30.0, nodata=-32768)  # fmt: skip
    return folder
