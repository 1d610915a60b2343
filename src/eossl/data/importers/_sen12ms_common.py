"""What the SEN12MS and DFC2020 importers share: the file naming, the readers of the S1/S2 patches and
the land-cover class schemes (IGBP, 17 classes, and the simplified 10-class DFC2020 scheme).

Both datasets name a patch ``<ROI>_<kind>_<scene>_p<patch>.tif`` with ``ROI`` such as
``ROIs1158_spring`` (SEN12MS) or ``ROIs0000_validation`` (DFC2020) and ``kind`` one of ``s1`` (VV, VH
backscatter in dB, float), ``s2`` (13 Sentinel-2 L1C bands B1..B12 with B8A, uint16), ``lc`` (MODIS
land cover, 4 bands: IGBP, LCCS-LC, LCCS-LU, LCCS-SH) or ``dfc`` (DFC2020 labels, 1 band, DFC classes
1..10). Class maps are stored zero-based (``class id = value - 1``) with :data:`IGNORE` for "no label".

A private module: the importer registry does not import it by itself; ``sen12ms`` and ``dfc2020``
import it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from eossl.data.importers.raster import open_raster, raster_shape, read_raster
from eossl.errors import ImportDataError

IGNORE = 255
"""Stored class value meaning "no label" (fill values of the source, and classes a scheme leaves out)."""

IGBP_CLASSES = (
    "Evergreen Needleleaf Forests",
    "Evergreen Broadleaf Forests",
    "Deciduous Needleleaf Forests",
    "Deciduous Broadleaf Forests",
    "Mixed Forests",
    "Closed Shrublands",
    "Open Shrublands",
    "Woody Savannas",
    "Savannas",
    "Grasslands",
    "Permanent Wetlands",
    "Croplands",
    "Urban and Built-Up Lands",
    "Cropland/Natural Vegetation Mosaics",
    "Permanent Snow and Ice",
    "Barren",
    "Water Bodies",
)
"""MODIS MCD12Q1 IGBP classes, source values 1..17."""

DFC_CLASSES = (
    "Forest",
    "Shrubland",
    "Savanna",
    "Grassland",
    "Wetlands",
    "Croplands",
    "Urban/Built-up",
    "Snow/Ice",
    "Barren",
    "Water",
)
"""The simplified IGBP scheme of DFC2020 (Yokoya et al. 2020), source values 1..10."""

IGBP_TO_DFC = (0, 1, 1, 1, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7, 6, 8, 9, 10)
"""IGBP value (index) -> DFC value: forests 1-5 -> 1, shrublands 6-7 -> 2, savannas 8-9 -> 3, grasslands
10 -> 4, wetlands 11 -> 5, croplands 12 and mosaics 14 -> 6, urban 13 -> 7, snow 15 -> 8, barren 16 -> 9,
water 17 -> 10 (as the DFC2020 baseline maps SEN12MS labels)."""

NAME = re.compile(r"^(?P<roi>ROIs\d+_[a-z]+)_(?P<kind>s1|s2|lc|dfc)_(?P<scene>\d+)_p(?P<patch>\d+)\.tif$")


def parse_name(name: str) -> dict[str, Any] | None:
    """``roi``, ``kind``, ``scene`` (int) and ``patch`` (int) of a SEN12MS/DFC2020 file name, or None."""
    match = NAME.match(name)
    if match is None:
        return None
    return {**match.groupdict(), "scene": int(match["scene"]), "patch": int(match["patch"])}


def lookup(values_to_ids: dict[int, int]) -> np.ndarray:
    """A 256-entry table: source value -> stored class id; values not given map to -1 (unexpected)."""
    table = np.full(256, -1, dtype=np.int16)
    for value, class_id in values_to_ids.items():
        table[value] = class_id
    return table


def read_s1(path: Path) -> np.ndarray:
    """``[2, H, W]`` float32 VV, VH backscatter in dB (NaN kept as shipped)."""
    values = read_raster(path)
    if values.shape[0] != 2:
        raise ImportDataError(f"'{path}': expected 2 Sentinel-1 bands (VV, VH), found {values.shape[0]}")
    if not np.issubdtype(values.dtype, np.floating):
        raise ImportDataError(f"'{path}': expected float backscatter in dB, found dtype {values.dtype}")
    return values.astype(np.float32)


def read_s2(path: Path) -> np.ndarray:
    """``[13, H, W]`` uint16 Sentinel-2 L1C (B1..B12 with B8A after B8, B10 included)."""
    values = read_raster(path)
    if values.shape[0] != 13:
        raise ImportDataError(f"'{path}': expected 13 Sentinel-2 bands (B1..B12 with B8A), found {values.shape[0]}")
    integer = np.issubdtype(values.dtype, np.integer)
    if values.dtype != np.uint16 and not (integer and values.min() >= 0 and values.max() <= 65535):
        raise ImportDataError(f"'{path}': expected uint16 reflectance x 10000, found dtype {values.dtype}")
    return values.astype(np.uint16)


def read_classes(path: Path, table: np.ndarray, *, bands: int, what: str) -> np.ndarray:
    """Band 1 of a class map with ``bands`` bands -> ``[1, H, W]`` uint8 stored ids through ``table``.

    A value the table does not know (neither a class nor a fill value) raises :class:`ImportDataError`
    naming the file and the values: a wrong or damaged label file is refused, not silently ignored.
    """
    with open_raster(path) as src:
        count = src.count
    if count != bands:
        raise ImportDataError(f"'{path}': expected {bands} band(s) ({what}), found {count}")
    raw = read_raster(path, bands=[1])
    if not np.issubdtype(raw.dtype, np.integer):
        raise ImportDataError(f"'{path}': expected integer class values ({what}), found dtype {raw.dtype}")
    out_of_range = (raw < 0) | (raw > 255)
    ids = table[np.where(out_of_range, 0, raw).astype(np.int64)]
    bad = out_of_range | (ids < 0)
    if bad.any():
        found = np.unique(raw[bad])[:8].tolist()
        known = sorted(int(v) for v in np.flatnonzero(table >= 0))
        raise ImportDataError(f"'{path}': unexpected class values {found} ({what}; expected values among {known})")
    return ids.astype(np.uint8)


def majority(ids: np.ndarray, ignore: int = IGNORE) -> int:
    """The most frequent class id of a map (ties: the smaller id), ``ignore`` when no pixel is labelled."""
    valid = ids[ids != ignore]
    return int(np.bincount(valid.ravel()).argmax()) if valid.size else ignore


def check_same_grid(arrays: dict[Path, np.ndarray]) -> None:
    """The patches of one sample must have one ``H x W``; else name every file with its size."""
    sizes = {path: tuple(a.shape[-2:]) for path, a in arrays.items()}
    if len(set(sizes.values())) > 1:
        shown = ", ".join(f"'{p}' {h}x{w}" for p, (h, w) in sizes.items())
        raise ImportDataError(f"patches of one sample differ in size: {shown}")


def place_cell(path: Path, km: float) -> str | None:
    """A ``km`` x ``km`` grid cell of the raster's centre in its own (projected) CRS, as text; None
    without a CRS or for a geographic CRS. Neighbouring patches of one scene share a cell, so a split
    by this place keeps them together."""
    with open_raster(path) as src:
        if src.crs is None or not src.crs.is_projected or km <= 0:
            return None
        x, y = src.transform @ (src.width / 2, src.height / 2)
        epsg = src.crs.to_epsg() or "crs"
    size = km * 1000.0
    return f"{epsg}_{int(np.floor(x / size))}_{int(np.floor(y / size))}"


def probe_shape(paths: list[Path], what: str) -> tuple[int, int, int]:
    """``(1, H, W)`` of a class map, from the first of ``paths`` (at most 20 tried) that opens: the
    store's label array is declared before pixels are read; a file that does not open fails later, by itself."""
    errors = []
    for path in paths[:20]:
        try:
            _, height, width = raster_shape(path)
            return 1, height, width
        except ImportDataError as exc:
            errors.append(str(exc))
    raise ImportDataError(
        f"no readable {what} file among the first {len(errors)}: {errors[0] if errors else 'none given'}"
    )
