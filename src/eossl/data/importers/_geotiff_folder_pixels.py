"""The ``geotiff-folder`` importer's pixels: values checked against the sensor's dtype (never clipped),
per-sample tiles read in strips of patch rows, patch centres in lat/lon."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from eossl.data.importers.raster import Patch, open_raster, read_band_files, read_raster
from eossl.errors import ImportDataError


def fit_dtype(values: np.ndarray, dtype: str, path: Path) -> np.ndarray:
    """``values`` in the sensor's dtype; an error when they do not fit (never clipped or rounded)."""
    target = np.dtype(dtype)
    if np.issubdtype(values.dtype, np.complexfloating) and not np.issubdtype(target, np.complexfloating):
        raise ImportDataError(f"'{path}': complex pixels ({values.dtype}) do not fit the sensor's {dtype}")
    if values.dtype == target or np.can_cast(values.dtype, target, "safe"):
        return values.astype(target, copy=False)
    if not np.issubdtype(target, np.integer):
        return values.astype(target)
    limits = np.iinfo(target)
    whole = not np.issubdtype(values.dtype, np.floating) or bool(np.all(np.isfinite(values) & (values % 1 == 0)))
    if whole and (values.size == 0 or (values.min() >= limits.min and values.max() <= limits.max)):
        return values.astype(target)
    raise ImportDataError(
        f"'{path}': pixels of dtype {values.dtype} (from {np.nanmin(values):g} to {np.nanmax(values):g}) do not fit "
        f"the sensor's {dtype}; describe the sensor in a YAML file with dtype: {values.dtype}"
    )


def patch_values(
    info: dict[str, Any], paths: list[Path], patches: list[Patch], shape: tuple[int, int]
) -> Iterator[tuple[Patch, np.ndarray]]:
    """Each patch's pixels: per-sample files read in strips of patch rows, per-band files whole."""
    if info["layout"] == "file-per-band":
        full = read_band_files(paths)
        for patch in patches:
            yield patch, full[(slice(None), *patch.slices)]
        return
    from rasterio.windows import Window

    rows: dict[int, list[Patch]] = {}
    for patch in patches:
        rows.setdefault(patch.row, []).append(patch)
    for row, group in rows.items():
        strip = read_raster(paths[0], window=Window(0, row, shape[1], group[0].size))
        for patch in group:
            yield patch, strip[:, :, patch.col : patch.col + patch.size]


def patch_centres(path: Path, patches: list[Patch]) -> list[tuple[float, float] | None]:
    """``(lat, lon)`` of each patch centre, transformed in one call."""
    from rasterio.warp import transform

    if not patches:
        return []
    with open_raster(path) as src:
        xy = [src.transform @ (p.col + p.size / 2, p.row + p.size / 2) for p in patches]
        lon, lat = transform(src.crs, "EPSG:4326", [x for x, _ in xy], [y for _, y in xy])
    return [(float(a), float(o)) for a, o in zip(lat, lon, strict=True)]
