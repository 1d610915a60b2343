"""Fake OSCD in the real layout: the images folder with train.txt/test.txt/all.txt and, per city,
imgs_1/ and imgs_2/ (one uint16 GeoTIFF per band named <product>_<band>.tif, at 10, 20 and 60 m in UTM),
imgs_1_rect/ and imgs_2_rect/ (10 m, no georeferencing), dates.txt, pair/img1.png, img2.png, <city>.geojson;
the Train/Test Labels folders with <city>/cm/<city>-cm.tif (1 no change, 2 change, no georeferencing) and
cm/cm.png (0/255).

Date 2's rasters start ``SHIFT`` = (2 rows, 3 columns) of 10 m pixels south-east of date 1's, so its pixel
``(r, c)`` lies on date 1's pixel ``(r + 2, c + 3)``. Band ``b`` of date ``d`` holds
``value(d, b, row, col, width)`` at its own resolution.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from eossl.data.importers.oscd import BANDS, IMAGES, LABELS
from eossl.data.importers.raster import write_geotiff

GSD = {"B01": 60, "B09": 60, "B10": 60, "B05": 20, "B06": 20, "B07": 20, "B8A": 20, "B11": 20, "B12": 20}
CITIES = {"alpha": "train", "beta": "test"}
ORIGINS = {"alpha": (440000.0, 5420000.0), "beta": (600000.0, 4800000.0)}  # UTM 31N: ~48.9 N 2.2 E, ~43.3 N 4.2 E
CRS = "EPSG:32631"
DATES = ("20151211", "20180330")
PRODUCTS = ("S2A_OPER_MSI_L1C_TL_SGS__20151211T105432_A002448_T31UDQ", "T31UDQ_20180330T104021")
SHIFT = (2, 3)


def value(date: int, band: str, row: np.ndarray, col: np.ndarray, width: int) -> np.ndarray:
    """The DN of band ``band`` of date ``date`` (1 or 2) at pixel ``(row, col)`` of its ``width``-wide grid."""
    return 2500 * (BANDS.index(band) + 1) + row * width + col + (5 if date == 2 else 0)


def change_codes(size: int) -> np.ndarray:
    """The change map as the tif codes it: 2 (change) on every 7th diagonal, 1 elsewhere."""
    rows, cols = np.mgrid[:size, :size]
    return np.where((rows + cols) % 7 == 0, 2, 1).astype(np.uint8)


def _write_png(path: Path, values: np.ndarray) -> None:
    import warnings

    import rasterio

    values = values[None] if values.ndim == 2 else values
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "PNG", "width": values.shape[2], "height": values.shape[1], "count": values.shape[0]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PNGs carry no georeferencing
        with rasterio.open(path, "w", dtype="uint8", **profile) as dst:
            dst.write(values)


def write_oscd(folder: Path, size: int = 48) -> Path:
    """Two cities (``alpha`` in train, ``beta`` in test) of ``size`` x ``size`` 10 m pixels; returns ``folder``."""
    assert size % 6 == 0, "the 60 m bands need a whole number of pixels"
    images = folder / IMAGES
    for city, split in CITIES.items():
        x0, y0 = ORIGINS[city]
        for date, (product, origin) in enumerate(
            zip(PRODUCTS, [(x0, y0), (x0 + 10 * SHIFT[1], y0 - 10 * SHIFT[0])], strict=True), start=1
        ):
            for band in BANDS:
                gsd = GSD.get(band, 10)
                n = size * 10 // gsd
                rows, cols = np.mgrid[:n, :n]
                values = value(date, band, rows, cols, n).astype(np.uint16)
                write_geotiff(
                    images / city / f"imgs_{date}" / f"{product}_{band}.tif", values, crs=CRS, origin=origin, gsd=gsd
                )
                rect = np.kron(values, np.ones((gsd // 10, gsd // 10), np.uint16))
                write_geotiff(images / city / f"imgs_{date}_rect" / f"{band}.tif", rect, crs=None)
            _write_png(images / city / "pair" / f"img{date}.png", np.full((3, size, size), 128, np.uint8))
        (images / city / "dates.txt").write_text(f"date_1: {DATES[0]}\ndate_2: {DATES[1]}\n")
        polygon = {
            "type": "Polygon",
            "coordinates": [[[2.2, 48.9], [2.3, 48.9], [2.3, 49.0], [2.2, 49.0], [2.2, 48.9]]],
        }
        (images / city / f"{city}.geojson").write_text(
            json.dumps(
                {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": polygon}]}
            )
        )
        codes = change_codes(size)
        labels = folder / LABELS[split] / city / "cm"
        write_geotiff(labels / f"{city}-cm.tif", codes, crs=None)
        _write_png(labels / "cm.png", np.where(codes == 2, 255, 0).astype(np.uint8))
    for split in ("train", "test"):
        (images / f"{split}.txt").write_text(",".join(c for c, s in CITIES.items() if s == split) + "\n")
    (images / "all.txt").write_text(",".join(CITIES) + "\n")
    return folder
