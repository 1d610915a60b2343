"""Reading BigEarthNet patch folders: the S2 bands at 10/20/60 m onto the 10 m grid, S1 VV/VH, each band
file checked against the size its resolution implies; dates and tiles in names and json times."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from eossl.data.importers.raster import open_raster
from eossl.errors import ImportDataError

S2_FILES = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
"""Band file suffixes in the order of the s2-l2a preset (B1..B8, B8A, B9, B11, B12)."""
S2_FACTOR = {"B01": 6, "B09": 6, "B05": 2, "B06": 2, "B07": 2, "B8A": 2, "B11": 2, "B12": 2}
"""Pixel-size factor of the 20 m and 60 m bands against the 10 m grid (the others: 1)."""
S1_FILES = ("VV", "VH")


def read_band(path: Path, expected: tuple[int, int] | None, out_shape: tuple[int, int] | None) -> np.ndarray:
    """One single-band file (opened once): checked against its ``expected`` size, resampled to ``out_shape``."""
    from rasterio.enums import Resampling
    from rasterio.errors import RasterioError

    with open_raster(path) as src:
        if src.count != 1 or (expected is not None and (src.height, src.width) != expected):
            want = "1 band" + (f" of {expected[0]}x{expected[1]} px at its resolution" if expected else "")
            raise ImportDataError(f"'{path}': {src.count} band(s) of {src.height}x{src.width} px, expected {want}")
        try:
            return src.read(1, out_shape=out_shape, resampling=Resampling.bilinear)
        except (RasterioError, ValueError) as exc:
            raise ImportDataError(f"'{path}': cannot read its pixels ({exc}); the file may be truncated") from None


def band_paths(folder: Path, bands: tuple[str, ...], what: str) -> list[Path]:
    paths = [folder / f"{folder.name}_{band}.tif" for band in bands]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise ImportDataError(f"'{folder}': {what} band files {missing} missing (expected {len(bands)} bands)")
    return paths


def read_s2(folder: Path) -> np.ndarray:
    """12 bands of one S2 patch folder on its 10 m grid, ``[12, H, W]`` uint16 (20 m, 60 m bands: bilinear)."""
    paths = band_paths(folder, S2_FILES, "S2")
    first = read_band(paths[1], None, None)  # B02, 10 m
    height, width = first.shape
    bands = []
    for band, path in zip(S2_FILES, paths, strict=True):
        factor = S2_FACTOR.get(band, 1)
        expected = (-(-height // factor), -(-width // factor))  # 60 m: 20 px beside 120
        bands.append(first if band == "B02" else read_band(path, expected, (height, width)))
    values = np.stack(bands)
    if values.dtype != np.uint16:
        raise ImportDataError(f"'{folder}': S2 bands are {values.dtype}, expected uint16 (L2A reflectance x 10000)")
    return values


def read_s1(folder: Path, shape: tuple[int, ...] | None) -> np.ndarray:
    """VV, VH of one S1 patch folder, ``[2, H, W]`` float32 dB, of the S2 patch's size."""
    paths = band_paths(folder, S1_FILES, "S1")
    return np.stack([read_band(p, shape, None) for p in paths]).astype(np.float32)


def day(text: Any, where: str = "", key: str = "") -> str:
    """The ISO date at the start of a json time (``2017-06-13 10:10:31``) or inside a product name (``_20170613T``)."""
    match = re.search(r"(?:^|_)(\d{4})-?(\d{2})-?(\d{2})(?:T|\s|$)", str(text or ""))
    if match:
        try:
            return date(*map(int, match.groups())).isoformat()
        except ValueError:  # 2017-13-45: shaped like a date, but none
            pass
    if where:
        raise ImportDataError(f"{where}: '{key}' {text!r} is not a date (expected YYYY-MM-DD ...)")
    return ""


def tile(text: str, s1: bool = False) -> str:
    """The MGRS tile in an L1C product name (``_T33UUP_``) or an S1 patch name (``_33UUP_<row>_<col>``)."""
    match = re.search(r"_(\d{2}[A-Z]{3})_\d+_\d+$" if s1 else r"_T(\d{2}[A-Z]{3})_", text or "")
    return match.group(1) if match else ""
