"""Fake SSL4EO-S12 in the real layout (as TorchGeo's tests/data/ssl4eo/s12/data.py): s1/, s2c/, s2a/ with
<7-digit location>/<product id>/<band>.tif, one single-band GeoTIFF per band at its own resolution
(10 m: size, 20 m: size / 2, 60 m: size / 6), S2 uint16 and S1 float32 dB, in UTM.

Values encode what they are, so a test can check band order and the pairing of products by date:
S2 band ``b`` (0-based, in the product's band order) of timestamp ``t`` at location ``loc`` is
``1000 + 100 * b + 10 * t + loc`` plus, on 10 m bands, a random 0..4; S1 VV is ``-10 - t - loc / 10``
and VH ``-20 - t - loc / 10`` plus noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eossl.data.importers.raster import write_geotiff
from eossl.data.importers.ssl4eo_s12 import BANDS
from eossl.data.sensors import S2_L1C_GSD

S2_GSD = dict(zip(BANDS["s2c"], S2_L1C_GSD, strict=True))
SEASON_DATES = ("20200323", "20200621", "20200924", "20201228")
S1_DATES = ("20200329", "20200627", "20200928", "20201230")
S1_PLATFORM = ("S1A", "S1B", "S1B", "S1A")  # by platform name, the products do not sort by date
ORIGIN = (500000.0, 4500000.0)  # UTM 33N, near 40.6 N, 15 E


def s2_product(day: str, tile: str = "T33TVF") -> str:
    """An Earth Engine Sentinel-2 product id (``<datatake>_<granule>_<tile>``)."""
    return f"{day}T100031_{day}T100305_{tile}"


def s1_product(platform: str, day: str) -> str:
    """A Sentinel-1 GRD product id."""
    return f"{platform}_IW_GRDH_1SDV_{day}T050000_{day}T050025_031883_03AE27_9BAF"


def s2_value(band: int, t: int, loc: int) -> int:
    """The (10 m: base) value of S2 band ``band`` at timestamp ``t`` of location ``loc``."""
    return 1000 + 100 * band + 10 * t + loc


def write_ssl4eo_s12(
    folder: Path,
    locations: int = 2,
    size: int = 12,
    products: tuple[str, ...] = ("s1", "s2c", "s2a"),
    timestamps: int = 4,
    seed: int = 0,
) -> Path:
    """``locations`` locations with ``timestamps`` (at most four, one per season) in each of ``products``."""
    rng = np.random.default_rng(seed)
    for loc in range(locations):
        name = f"{loc:07d}"
        origin = (ORIGIN[0] + 5000 * loc, ORIGIN[1])
        for t in range(timestamps):
            for product in products:
                if product == "s1":
                    pid = s1_product(S1_PLATFORM[t], S1_DATES[t])
                    for b, band in enumerate(BANDS["s1"]):
                        values = -10.0 * (b + 1) - t - loc / 10 + rng.normal(0, 0.1, (size, size))
                        write_geotiff(
                            folder / "s1" / name / pid / f"{band}.tif",
                            values.astype(np.float32),
                            crs="EPSG:32633",
                            origin=origin,
                        )
                    continue
                pid = s2_product(SEASON_DATES[t])
                for b, band in enumerate(BANDS[product]):
                    gsd = S2_GSD[band]
                    n = max(1, round(size * 10 / gsd))
                    values = np.full((n, n), s2_value(b, t, loc), dtype=np.uint16)
                    if gsd == 10:
                        values += rng.integers(0, 5, (n, n)).astype(np.uint16)
                    write_geotiff(
                        folder / product / name / pid / f"{band}.tif", values, crs="EPSG:32633", origin=origin, gsd=gsd
                    )
    return folder
