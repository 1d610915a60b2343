"""Whole synthetic scenes as GeoTIFFs: one location of the synthetic Earth rendered at any size and
written in its UTM zone, with the truth of its targets beside it, for ``eossl predict`` and ``eossl embed``.

The land cover, illumination and sensor model are those of the store generator (one location of
``size`` x ``size`` pixels at 10 m), so a model trained on a synthetic store applies to the scene as
to a larger view of the same world. Files: ``s2.tif`` (12 bands, uint16 DN = reflectance x 10000,
nodata 0, band descriptions = band names), ``s1.tif`` (VV, VH in dB), ``lulc.tif`` (land-cover class
ids), with ``forest_targets`` also ``forest.tif`` and ``tree_density.tif``, with ``change_fraction``
also ``s2_after.tif`` (one year later) and ``change.tif``. Every file is written atomically.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from eossl.data.store import SampleStore
from eossl.data.synth.generator import SynthSpec, synthesize_store
from eossl.errors import ConfigError
from eossl.io import atomic_path

GSD_M = 10.0


def utm_crs(lat: float, lon: float) -> CRS:
    """The WGS 84 / UTM zone of a point (EPSG:326xx north, 327xx south)."""
    zone = int((lon + 180) // 6) % 60 + 1
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def _origin(lat: float, lon: float, crs: CRS, size: int) -> tuple[float, float]:
    """Upper-left corner (x, y) of a ``size``-pixel square centred on the point, on a 10 m grid."""
    from pyproj import Transformer

    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    half = size * GSD_M / 2
    return float(np.floor((x - half) / GSD_M) * GSD_M), float(np.ceil((y + half) / GSD_M) * GSD_M)


def _write(path: Path, array: np.ndarray, profile: dict, descriptions: tuple[str, ...]) -> None:
    with atomic_path(path) as tmp:
        bands = array.reshape(-1, *array.shape[-2:])
        meta = {**profile, "count": bands.shape[0], "dtype": bands.dtype.name}
        with rasterio.open(tmp, "w", driver="GTiff", **meta) as dst:
            dst.write(bands)
            dst.descriptions = descriptions


def write_scene(out: str | Path, size: int = 512, seed: int = 0, forest_targets: bool = True,
                change_fraction: float = 0.0, overwrite: bool = False) -> list[Path]:  # fmt: skip
    """Render one synthetic location of ``size`` x ``size`` px into GeoTIFFs in folder ``out`` (see the
    module docstring); returns the files written."""
    out = Path(out)
    if size < 32 or size % 32:
        raise ConfigError(f"scene size must be a positive multiple of 32 px, got {size}")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"'{out}' already holds files: choose another folder or pass --overwrite")
    spec = replace(SynthSpec(), num_locations=1, seasons=1, patch_size=size, seed=seed, cloud_probability=0.0,
                   forest_targets=forest_targets, change_fraction=1.0 if change_fraction > 0 else 0.0)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        store = SampleStore(synthesize_store(Path(tmp) / "scene", spec))
        row = store.table.iloc[0]
        crs = utm_crs(float(row["lat"]), float(row["lon"]))
        transform = from_origin(*_origin(float(row["lat"]), float(row["lon"]), crs, size), GSD_M, GSD_M)
        base = {"width": size, "height": size, "crs": crs, "transform": transform, "tiled": True,
                "blockxsize": 256, "blockysize": 256, "compress": "deflate"}  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name in ("s2", "s1", "lulc", "forest", "tree_density", "s2_after", "change"):
            if name not in store.arrays:
                continue
            modality = store.modalities.get(name)
            array = store.read(name, np.array([0]))[0]
            nodata = modality.nodata if modality is not None else (255 if array.dtype == np.uint8 else None)
            descriptions = tuple(modality.bands) if modality is not None else (name,) * array.reshape(
                -1, size, size).shape[0]  # fmt: skip
            path = out / f"{name}.tif"
            _write(path, array, {**base, "nodata": nodata}, descriptions)
            written.append(path)
    return written
