"""Reading rasters for importers: clear errors naming the file, bands at several resolutions on one
grid, tiles cut into patches, two dates aligned through their georeferencing, patch centres in lat/lon.

Every function raises :class:`~eossl.errors.ImportDataError` naming the file for what a user can fix
(a file that is not a raster, truncated, without CRS, of the wrong size).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eossl.errors import ImportDataError


@contextmanager
def open_raster(path: str | Path, *, require_crs: bool = False) -> Iterator[Any]:
    """``rasterio.open(path)`` with errors that name the file (missing, not a raster, no CRS)."""
    import rasterio
    from rasterio.errors import RasterioError

    path = Path(path)
    if not path.is_file():
        raise ImportDataError(f"'{path}': file does not exist")
    try:
        dataset = rasterio.open(path)
    except (RasterioError, ValueError) as exc:  # ValueError: e.g. a damaged CRS tag that is not UTF-8
        raise ImportDataError(f"'{path}': not a readable raster ({' '.join(str(exc).split())})") from None
    try:
        if require_crs and dataset.crs is None:
            raise ImportDataError(f"'{path}': raster has no CRS (unknown georeferencing); it cannot be placed")
        yield dataset
    finally:
        dataset.close()


def read_raster(
    path: str | Path,
    *,
    out_shape: tuple[int, int] | None = None,
    resampling: str = "bilinear",
    window: Any = None,
    bands: Sequence[int] | None = None,
) -> np.ndarray:
    """``[C, H, W]`` values of ``path`` (1-based ``bands``, default all), resampled to ``out_shape`` if given.

    Resampling: ``bilinear`` for measurements, ``nearest`` for class maps. A truncated or damaged file
    raises :class:`ImportDataError` naming it.
    """
    from rasterio.enums import Resampling
    from rasterio.errors import RasterioError

    with open_raster(path) as src:
        indexes = list(bands) if bands is not None else list(range(1, src.count + 1))
        shape = None if out_shape is None else (len(indexes), *out_shape)
        try:
            return src.read(indexes, out_shape=shape, window=window, resampling=Resampling[resampling])
        except (RasterioError, ValueError) as exc:
            raise ImportDataError(f"'{path}': cannot read its pixels ({exc}); the file may be truncated") from None


def raster_shape(path: str | Path) -> tuple[int, int, int]:
    """``(bands, height, width)`` of a raster without reading pixels."""
    with open_raster(path) as src:
        return src.count, src.height, src.width


def read_band_files(paths: Sequence[Path], *, resampling: str = "bilinear") -> np.ndarray:
    """One single-band file per band -> ``[C, H, W]`` on the grid of the finest band (most pixels).

    Bands at coarser resolution (Sentinel-2's 20 m and 60 m bands beside 10 m ones) are resampled; a
    band whose extent is not a whole multiple of the finest grid is still resampled to it, since the
    files of one product share their footprint.
    """
    if not paths:
        raise ImportDataError("no band files given")
    shapes = [raster_shape(p) for p in paths]
    for path, shape in zip(paths, shapes, strict=True):
        if shape[0] != 1:
            raise ImportDataError(f"'{path}': expected one band per file, found {shape[0]}")
    height, width = max(((s[1], s[2]) for s in shapes), key=lambda hw: hw[0] * hw[1])  # the finest grid
    return np.concatenate([read_raster(p, out_shape=(height, width), resampling=resampling) for p in paths])


@dataclass(frozen=True)
class Patch:
    """A ``size`` x ``size`` window of a tile at ``(row, col)`` (pixels)."""

    row: int
    col: int
    size: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.row, self.row + self.size), slice(self.col, self.col + self.size)


def patch_grid(height: int, width: int, size: int, stride: int | None = None) -> list[Patch]:
    """Windows of ``size`` pixels every ``stride`` (default ``size``) that fit inside a tile."""
    stride = stride or size
    if size < 1 or stride < 1:
        raise ImportDataError(f"patch size {size} and stride {stride} must be positive")
    rows = range(0, height - size + 1, stride)
    cols = range(0, width - size + 1, stride)
    return [Patch(r, c, size) for r in rows for c in cols]


def invalid_share(values: np.ndarray, nodata: float | None) -> float:
    """Share of pixels (over all bands) that are NaN/inf or ``nodata``."""
    bad = ~np.isfinite(values) if np.issubdtype(values.dtype, np.floating) else np.zeros(values.shape, bool)
    if nodata is not None:
        bad |= values == nodata
    return float(bad.mean()) if bad.size else 1.0


def centre_lonlat(path: str | Path, patch: Patch | None = None) -> tuple[float, float]:
    """``(lat, lon)`` of the centre of a raster (or of one of its patches); NaN when it has no CRS."""
    from rasterio.warp import transform as warp_transform

    with open_raster(path) as src:
        if src.crs is None:
            return float("nan"), float("nan")
        if patch is None:
            row, col = src.height / 2, src.width / 2
        else:
            row, col = patch.row + patch.size / 2, patch.col + patch.size / 2
        x, y = src.transform @ (col, row)
        lon, lat = warp_transform(src.crs, "EPSG:4326", [x], [y])
    return float(lat[0]), float(lon[0])


def align_to(reference: str | Path, other: str | Path, *, resampling: str = "bilinear") -> np.ndarray:
    """``other``'s pixels reprojected onto ``reference``'s grid (CRS, transform, size) -> ``[C, H, W]``.

    For two dates of one place whose rasters differ in extent or pixel grid (OSCD's image pairs): the
    overlap is filled from ``other``, pixels outside it are NaN (float) or 0 (integers).
    """
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    with open_raster(reference, require_crs=True) as ref:
        crs, transform, shape = ref.crs, ref.transform, (ref.height, ref.width)
    with open_raster(other, require_crs=True) as src:
        values = src.read()
        floating = np.issubdtype(values.dtype, np.floating)
        out = np.full((src.count, *shape), np.nan if floating else 0, dtype=values.dtype)
        reproject(
            values,
            out,
            src_transform=src.transform,
            src_crs=src.crs,
            dst_transform=transform,
            dst_crs=crs,
            src_nodata=src.nodata,
            dst_nodata=np.nan if floating else 0,
            resampling=Resampling[resampling],
        )
    return out


def reproject_array(
    values: np.ndarray,
    src: tuple[Any, Any],
    dst: tuple[Any, Any, tuple[int, int]],
    *,
    nodata: float | None = None,
    resampling: str = "bilinear",
) -> np.ndarray:
    """``[C, H, W]`` ``values`` on grid ``src = (crs, transform)`` reprojected onto ``dst = (crs, transform,
    (height, width))`` -- :func:`align_to` for arrays already in memory (e.g. bands resampled onto one grid).

    ``nodata`` (default NaN for floats, 0 for integers) marks source pixels to leave out and fills the
    pixels outside the overlap.
    """
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    floating = np.issubdtype(values.dtype, np.floating)
    fill = nodata if nodata is not None else (np.nan if floating else 0)
    out = np.full((values.shape[0], *dst[2]), fill, dtype=values.dtype)
    reproject(
        values,
        out,
        src_transform=src[1],
        src_crs=src[0],
        dst_transform=dst[1],
        dst_crs=dst[0],
        src_nodata=fill,
        dst_nodata=fill,
        resampling=Resampling[resampling],
    )
    return out


def write_geotiff(
    path: Path,
    values: np.ndarray,
    *,
    crs: str | None = "EPSG:32633",
    origin=(500000.0, 5000000.0),
    gsd: float = 10.0,
    nodata: float | None = None,
    compress: str | None = None,
) -> Path:
    """Write ``[C, H, W]`` (or ``[H, W]``) ``values`` as a GeoTIFF with a north-up grid (fixtures, examples)."""
    import rasterio
    from rasterio.transform import from_origin

    values = values[None] if values.ndim == 2 else values
    path.parent.mkdir(parents=True, exist_ok=True)
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": values.shape[2],
        "height": values.shape[1],
        "count": values.shape[0],
        "dtype": values.dtype.name,
        "transform": from_origin(origin[0], origin[1], gsd, gsd),
    }
    if crs is not None:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    if compress:
        profile["compress"] = compress
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values)
    return path
