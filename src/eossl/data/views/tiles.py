"""Tiles of the views pipeline: what each acquisition is (file, CRS, resolution, time, sensor) and where
its valid pixels lie (a footprint in one equal-area CRS), read from a folder of GeoTIFFs, a CSV of
paths or a STAC ItemCollection saved as JSON.

A footprint is the outline of the tile's valid pixels (``footprint: data``: the convex hull of a
decimated nodata mask, shrunk by one decimated cell so it stays inside; EnMAP and Landsat tiles are
rotated inside north-up rasters) or its raster bounds (``footprint: bounds``); STAC Items and CSV rows
with a ``footprint`` WKT (lon/lat) give it without reading pixels.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import Polygon, box, shape

from eossl.data.importers._geotiff_folder_inputs import date_in
from eossl.data.importers.raster import open_raster
from eossl.data.views.options import EQUAL_AREA_CRS, ViewsOptions
from eossl.errors import ConfigError, ImportDataError

TIME_TAGS = ("TIFFTAG_DATETIME", "ACQUISITION_TIME", "ACQUISITION_DATE", "DATETIME", "datetime")
SENSOR_TAGS = ("SENSOR", "PLATFORM", "platform", "sensor")
MASK_SIDE = 256
"""The nodata mask a ``data`` footprint is traced on is decimated to about this many cells a side."""


@dataclass(frozen=True)
class Tile:
    """One acquisition: ``footprint`` is in :data:`EQUAL_AREA_CRS`, ``time`` a UTC timestamp."""

    id: str
    path: str
    crs: str
    resolution: float
    time: pd.Timestamp
    sensor: str
    footprint: Polygon
    origin: tuple[float, float] = (0.0, 0.0)  # the raster's upper-left corner in its CRS


@dataclass
class TileSet:
    """The tiles found, and those left out (duplicates listed twice, other sensors) with the reason."""

    source: str
    tiles: list[Tile]
    left_out: list[dict[str, str]] = field(default_factory=list)

    @property
    def sensor(self) -> str:
        return self.tiles[0].sensor if self.tiles else ""


def to_equal_area(geometry: Any, crs: str) -> Any:
    """``geometry`` (in ``crs``) in :data:`EQUAL_AREA_CRS`, edges densified so curved images stay true."""
    return transform_geometry(geometry, crs, EQUAL_AREA_CRS)


def from_equal_area(geometry: Any, crs: str) -> Any:
    """``geometry`` from :data:`EQUAL_AREA_CRS` into ``crs``."""
    return transform_geometry(geometry, EQUAL_AREA_CRS, crs)


@lru_cache(maxsize=64)
def _transformer(src: str, dst: str) -> Any:
    from pyproj import Transformer

    return Transformer.from_crs(src, dst, always_xy=True)


def transform_geometry(geometry: Any, src: str, dst: str) -> Any:
    """``geometry`` from CRS ``src`` into ``dst`` (edges densified to a sixteenth of its extent first)."""
    if src == dst:
        return geometry
    transformer = _transformer(src, dst)
    xmin, ymin, xmax, ymax = shapely.total_bounds(geometry)
    step = max(xmax - xmin, ymax - ymin) / 16 or 1.0
    dense = shapely.segmentize(geometry, step)
    return shapely.transform(dense, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))


def parse_time(value: Any, where: str) -> pd.Timestamp:
    """A UTC timestamp from ISO text, a TIFF ``YYYY:MM:DD HH:MM:SS`` tag or a date; error naming ``where``."""
    text = str(value).strip()
    text = re.sub(r"^(\d{4}):(\d{2}):(\d{2})", r"\1-\2-\3", text)  # TIFFTAG_DATETIME
    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError):
        stamp = pd.NaT
    if pd.isna(stamp):
        raise ImportDataError(f"{where}: acquisition time {value!r} is not a date/time (expected ISO 8601)")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def read_tiles(source: Path, options: ViewsOptions) -> TileSet:
    """The tiles of ``source``: a folder of GeoTIFFs, a ``.csv`` of paths or a STAC ``.json``."""
    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in (".tif", ".tiff") and p.is_file())
        if not files:
            raise ImportDataError(f"'{source}': no GeoTIFF (.tif/.tiff) in this folder")
        entries = [{"path": p} for p in files]
    elif source.suffix.lower() == ".csv":
        entries = _csv_entries(source)
    elif source.suffix.lower() == ".json":
        entries = _stac_entries(source)
    elif not source.exists():
        raise ImportDataError(f"'{source}' does not exist")
    else:
        raise ImportDataError(f"'{source}': expected a folder of GeoTIFFs, a .csv of paths or a STAC .json")
    found = TileSet(str(source), [])
    seen: set[Path] = set()
    for entry in entries:
        path = Path(entry["path"]).resolve()
        if path in seen:
            found.left_out.append({"tile": path.stem, "reason": f"'{path}' is listed twice"})
            continue
        seen.add(path)
        tile = _tile(entry, options)
        if options.tile_sensor is not None and tile.sensor != options.tile_sensor:
            found.left_out.append({"tile": tile.id, "reason": f"sensor {tile.sensor}, not {options.tile_sensor}"})
            continue
        found.tiles.append(tile)
    sensors = pd.Series([t.sensor for t in found.tiles]).value_counts()
    if len(sensors) > 1:
        listed = ", ".join(f"{name} ({count})" for name, count in sensors.items())
        raise ConfigError(f"'{source}': tiles of several sensors ({listed}); choose one with tile_sensor=NAME")
    if not found.tiles:
        raise ImportDataError(f"'{source}': no tile left (tile_sensor={options.tile_sensor!r})")
    ids = pd.Series([t.id for t in found.tiles])
    if ids.duplicated().any():
        raise ImportDataError(f"'{source}': several tiles are named {sorted(set(ids[ids.duplicated()]))}; names "
                              "identify tiles in the store, so they must differ")  # fmt: skip
    return found


def _tile(entry: dict[str, Any], options: ViewsOptions) -> Tile:
    path = Path(entry["path"])
    with open_raster(path, require_crs=True) as src:
        crs = src.crs.to_string()
        tags = src.tags()
        resolution = float(abs(src.res[0]))
        origin = (float(src.transform.c), float(src.transform.f))
        footprint = entry.get("footprint")
        if footprint is not None:
            footprint = transform_geometry(footprint, "EPSG:4326", EQUAL_AREA_CRS)
        elif options.footprint == "data":
            footprint = to_equal_area(_data_outline(src, path), crs)
        else:
            footprint = to_equal_area(box(*src.bounds), crs)
    when = entry.get("time") or next((tags[k] for k in TIME_TAGS if tags.get(k)), None) or date_in([path.name])
    if when is None:
        raise ImportDataError(f"'{path}': no acquisition time (a TIFFTAG_DATETIME tag, a YYYYMMDD date in the "
                              "name, a CSV 'time' column or a STAC datetime)")  # fmt: skip
    sensor = entry.get("sensor") or next((tags[k] for k in SENSOR_TAGS if tags.get(k)), "unknown")
    if footprint.is_empty or footprint.area <= 0:
        raise ImportDataError(f"'{path}': no valid pixel (every pixel is nodata/NaN), so it has no footprint")
    when = parse_time(when, f"'{path}'")
    return Tile(path.stem, str(path), crs, resolution, when, str(sensor), footprint, origin)


def _data_outline(src: Any, path: Path) -> Polygon:
    """Convex hull of the valid pixels of band 1, traced on a decimated mask and shrunk by one cell."""
    from rasterio.enums import Resampling
    from rasterio.features import shapes

    step = max(1, max(src.height, src.width) // MASK_SIDE)
    rows, cols = max(1, src.height // step), max(1, src.width // step)
    try:
        values = src.read(1, out_shape=(rows, cols), resampling=Resampling.nearest)
    except Exception as exc:  # a damaged block: name the file
        raise ImportDataError(f"'{path}': cannot read its pixels ({' '.join(str(exc).split())})") from None
    valid = np.isfinite(values) if np.issubdtype(values.dtype, np.floating) else np.ones(values.shape, bool)
    if src.nodata is not None:
        valid &= values != src.nodata
    if not valid.any():
        return Polygon()
    transform = src.transform * src.transform.scale(src.width / cols, src.height / rows)
    parts = [shape(geom) for geom, _ in shapes(valid.astype(np.uint8), mask=valid, transform=transform)]
    hull = shapely.union_all(parts).convex_hull
    if step > 1:
        hull = hull.buffer(-step * abs(src.res[0]), join_style="mitre")
    return hull if isinstance(hull, Polygon) else Polygon()


def _csv_entries(path: Path) -> list[dict[str, Any]]:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ImportDataError(f"'{path}': not a readable CSV ({' '.join(str(exc).split())})") from None
    if "path" not in table.columns:
        raise ImportDataError(f"'{path}': needs a 'path' column (and optionally time, sensor, footprint WKT); "
                              f"has {list(table.columns)}")  # fmt: skip
    entries = []
    for number, row in enumerate(table.to_dict("records"), start=2):
        entry: dict[str, Any] = {"path": path.parent / row["path"]}
        entry.update({k: row[k] for k in ("time", "sensor") if row.get(k)})
        if row.get("footprint"):
            try:
                entry["footprint"] = shapely.from_wkt(row["footprint"])
            except shapely.errors.GEOSException:
                raise ImportDataError(f"'{path}' line {number}: footprint is not WKT: {row['footprint']!r}") from None
        entries.append(entry)
    return entries


def _stac_entries(path: Path) -> list[dict[str, Any]]:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ImportDataError(f"'{path}': not valid JSON ({exc})") from None
    items = payload.get("features") if isinstance(payload, dict) else payload
    if isinstance(payload, dict) and payload.get("type") == "Feature":
        items = [payload]
    if not isinstance(items, list):
        raise ImportDataError(f"'{path}': expected a STAC ItemCollection (a FeatureCollection of Items)")
    return [_stac_entry(path, i, item) for i, item in enumerate(items)]


def _stac_entry(path: Path, index: int, item: Any) -> dict[str, Any]:
    where = f"'{path}' item {item.get('id', index) if isinstance(item, dict) else index}"
    if not isinstance(item, dict) or not isinstance(item.get("assets"), dict):
        raise ImportDataError(f"{where}: a STAC Item needs 'assets'")
    hrefs = [a.get("href") for a in item["assets"].values() if isinstance(a, dict) and _is_geotiff(a)]
    if not hrefs:
        raise ImportDataError(f"{where}: no GeoTIFF asset (an href ending in .tif or type image/tiff)")
    properties = item.get("properties") or {}
    entry: dict[str, Any] = {"path": path.parent / str(hrefs[0])}
    when = properties.get("datetime") or properties.get("start_datetime")
    if when:
        entry["time"] = when
    sensor = properties.get("platform") or properties.get("constellation")
    if sensor:
        entry["sensor"] = str(sensor)
    if item.get("geometry"):
        try:
            entry["footprint"] = shape(item["geometry"])
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise ImportDataError(f"{where}: geometry is not GeoJSON ({exc})") from None
    return entry


def _is_geotiff(asset: dict[str, Any]) -> bool:
    href = str(asset.get("href", "")).lower()
    return "tiff" in str(asset.get("type", "")).lower() or href.endswith((".tif", ".tiff"))
