"""Fake eo-learn EOPatches in the layout ``EOPatch.save`` writes (eo-learn >= 1.0): data/BANDS.npy
(time, h, w, 13) float32 reflectance, data_timeless/DEM.npy.gz (gzip-compressed), mask/IS_DATA.npy
(time, h, w, 1) uint8, mask_timeless/LULC.npy (h, w, 1) uint16, timestamps.json, bbox.geojson (UTM 33N)
and, for the refused old format, timestamp.pkl instead of timestamps.json.
"""

from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path

import numpy as np

TIMESTAMPS = ("2019-01-05T10:01:02", "2019-02-14T10:03:04", "2019-04-20T10:05:06", "2019-07-09T10:07:08")
ORIGIN = (465000.0, 5080000.0)  # upper-left corner, EPSG:32633 (Slovenia, ~45.9 N 14.6 E)
LULC_VALUES = (0, 2, 5)
INVALID = (slice(0, 6), slice(0, 9))
"""IS_DATA is 0 (no data) in these rows and columns of date 1."""


def bands(size: int = 12) -> np.ndarray:
    """BANDS as written: (time, h, w, 13), band b of date t at pixel (r, c) = 0.01 (b + 1) + 0.1 t + 1e-4 (r h + c)."""
    t, r, c, b = np.meshgrid(np.arange(len(TIMESTAMPS)), np.arange(size), np.arange(size), np.arange(13), indexing="ij")
    return (0.01 * (b + 1) + 0.1 * t + 1e-4 * (r * size + c)).astype(np.float32)


def lulc(size: int = 12) -> np.ndarray:
    """LULC as written: (h, w, 1) uint16, the values of :data:`LULC_VALUES` in column bands."""
    cols = np.arange(size) * len(LULC_VALUES) // size
    return np.broadcast_to(np.asarray(LULC_VALUES, np.uint16)[cols], (size, size))[..., None].copy()


class _Marker:
    """Unpickling this creates a file: proof that the importer never ran pickle."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def write_eopatch(folder: Path, size: int = 12, pickled_timestamps: bool = False) -> Path:
    """One EOPatch of ``size`` x ``size`` pixels at 10 m and 4 dates; returns its folder."""
    (folder / "data").mkdir(parents=True)
    np.save(folder / "data" / "BANDS.npy", bands(size))
    (folder / "data_timeless").mkdir()
    dem = (300 + np.arange(size * size, dtype=np.float32).reshape(size, size, 1)).astype(np.float32)
    with gzip.open(folder / "data_timeless" / "DEM.npy.gz", "wb") as handle:
        np.save(handle, dem)
    (folder / "mask").mkdir()
    is_data = np.ones((len(TIMESTAMPS), size, size, 1), np.uint8)
    is_data[(0, *INVALID)] = 0
    np.save(folder / "mask" / "IS_DATA.npy", is_data)
    (folder / "mask_timeless").mkdir()
    np.save(folder / "mask_timeless" / "LULC.npy", lulc(size))
    x0, y0 = ORIGIN
    x1, y1 = x0 + 10 * size, y0 - 10 * size
    bbox = {
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}},
        "type": "Polygon",
        "coordinates": [[[x0, y1], [x0, y0], [x1, y0], [x1, y1], [x0, y1]]],
    }
    (folder / "bbox.geojson").write_text(json.dumps(bbox, indent=2))
    if pickled_timestamps:  # eo-learn < 1.0
        (folder / "timestamp.pkl").write_bytes(pickle.dumps(_Marker(folder.parent / "UNPICKLED")))
    else:
        (folder / "timestamps.json").write_text(json.dumps(list(TIMESTAMPS), indent=2))
    return folder
