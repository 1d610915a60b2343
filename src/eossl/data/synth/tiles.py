"""A synthetic set of overlapping satellite tiles, like EnMAP tiles revisiting the same ground on
different dates, for the "temporal views from overlapping tiles" pipeline.

Each tile is a north-up int16 GeoTIFF (reflectance x 10000, nodata -32768, bands ``B1..Bn``) in its
own UTM zone (EPSG:32632 west of 12 E, EPSG:32633 east of it) whose valid pixels form a rectangle
rotated by 8-15 degrees, like a satellite track. Tiles are centred near three sites: site A on the
zone boundary (12 E, 48 N), site B about 0.6 tile sides east of it (its tiles overlap A's partly) and
site C about 60 km away, so the set has at least two separate groups of overlapping tiles. A pixel's
value depends only on its ground position and the date: ``base_b + texture(E, N, b) + season(date, b)``
with the texture evaluated in a fixed EPSG:32632 frame, so one ground point has one value per date and
two dates differ by a constant per band. About a third of the tiles get a stripe of nodata rows, and
one tile (not the first) is written twice under another name (``..._dup.tif``, byte-identical).

Beside the tiles: ``sensor.yaml`` (read by :func:`eossl.data.sensors.sensor_from_yaml`), ``tiles.csv``
(``path,time,sensor``) and ``tiles.stac.json`` (a STAC ItemCollection with the rotated footprints).
Every file is written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.transform import from_origin

from eossl.errors import ConfigError
from eossl.io import atomic_path, write_text_atomic

NODATA = -32768
SENSOR = "SYN"
ZONE_LON = 12.0
"""Tiles whose centre longitude is below this are in EPSG:32632, the others in EPSG:32633."""
REFERENCE_EPSG = 32632
"""The fixed frame the ground texture is evaluated in, whatever the tile's CRS."""
START = datetime(2023, 3, 1, tzinfo=UTC)
SITE_ORDER = (0, 2, 1)
"""Site of tile ``k`` is ``SITE_ORDER[k % 3]``: any three tiles cover all sites (and both zones)."""
_M_PER_DEG = 111_320.0


@dataclass(frozen=True)
class TileSetSpec:
    """What :func:`write_tile_set` writes: ``tiles`` acquisitions (the duplicate comes on top) of
    ``size`` x ``size`` px, ``bands`` bands at ``resolution`` m, drawn from ``seed``."""

    tiles: int = 12
    size: int = 96
    bands: int = 4
    resolution: float = 30.0
    seed: int = 0
    nan_stripes: bool = True
    duplicate: bool = True

    def __post_init__(self) -> None:
        if self.tiles < 1 or self.size < 16 or self.bands < 1 or not self.resolution > 0:
            raise ConfigError(f"tile set: need tiles >= 1, size >= 16 px, bands >= 1 and resolution > 0, got {self}")
        if self.duplicate and self.tiles < 2:
            raise ConfigError("tile set: duplicate needs at least 2 tiles (the first is never duplicated)")


@dataclass(frozen=True)
class _Tile:
    k: int
    when: datetime
    epsg: int
    origin: tuple[float, float]
    angle: float
    stripe: tuple[int, int] | None

    @property
    def stem(self) -> str:
        return f"SYN_{self.when:%Y%m%dT%H%M%S}_{self.k:03d}"


def _sites(side_m: float) -> list[tuple[float, float]]:
    """(lon, lat) of sites A (on the zone boundary), B (partly overlapping A) and C (about 60 km away)."""
    far = max(60_000.0, 4 * side_m)
    offsets = [(0.0, 0.0), (0.55 * side_m, 0.25 * side_m), (-0.92 * far, -0.38 * far)]
    return [(ZONE_LON + de / (_M_PER_DEG * math.cos(math.radians(48.0))), 48.0 + dn / _M_PER_DEG) for de, dn in offsets]


def _footprint_mask(spec: TileSetSpec, angle: float) -> np.ndarray:
    """The valid pixels: a rectangle (0.62 x 0.80 of the side) rotated by ``angle`` degrees about the centre."""
    centre = (spec.size - 1) / 2
    v, u = np.mgrid[0 : spec.size, 0 : spec.size].astype(np.float64) - centre
    theta = math.radians(angle)
    across = u * math.cos(theta) - v * math.sin(theta)
    along = u * math.sin(theta) + v * math.cos(theta)
    return (np.abs(across) <= 0.31 * spec.size) & (np.abs(along) <= 0.40 * spec.size)


def _corners(spec: TileSetSpec, tile: _Tile) -> list[tuple[float, float]]:
    """The rotated rectangle's corners (x, y) in the tile's CRS, clockwise from the top left."""
    half = (spec.size - 1) / 2
    cx, cy = tile.origin[0] + (half + 0.5) * spec.resolution, tile.origin[1] - (half + 0.5) * spec.resolution
    theta = math.radians(tile.angle)
    points = []
    for a, b in ((-0.31, -0.40), (0.31, -0.40), (0.31, 0.40), (-0.31, 0.40)):
        u = (a * math.cos(theta) + b * math.sin(theta)) * spec.size  # inverse of the rotation in _footprint_mask
        v = (-a * math.sin(theta) + b * math.cos(theta)) * spec.size
        points.append((cx + u * spec.resolution, cy - v * spec.resolution))
    return points


def _plan(spec: TileSetSpec, rng: np.random.Generator) -> list[_Tile]:
    """Where, when and how each tile is acquired (all random draws in a fixed order)."""
    side = spec.size * spec.resolution
    sites = _sites(side)
    to_utm = {epsg: Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True) for epsg in (32632, 32633)}
    plan = []
    for k in range(spec.tiles):
        lon, lat = sites[SITE_ORDER[k % 3]]
        de, dn = rng.uniform(-0.2, 0.2, size=2) * side
        lon += de / (_M_PER_DEG * math.cos(math.radians(lat)))
        lat += dn / _M_PER_DEG
        epsg = 32632 if lon < ZONE_LON else 32633
        x, y = to_utm[epsg].transform(lon, lat)
        origin = (
            math.floor((x - side / 2) / spec.resolution) * spec.resolution,
            math.ceil((y + side / 2) / spec.resolution) * spec.resolution,
        )
        when = START + timedelta(days=17 * k, seconds=int(rng.integers(9 * 3600, 12 * 3600)))
        angle = float(rng.uniform(8.0, 15.0))
        stripe_rows = int(rng.integers(3, 9))
        start = int(rng.integers(-spec.size // 4, spec.size // 4 - stripe_rows + 1)) + spec.size // 2
        plan.append(_Tile(k, when, epsg, origin, angle, (max(start, 0), min(start + stripe_rows, spec.size))))
    striped = set()
    if spec.nan_stripes:
        striped = {int(i) for i in rng.choice(spec.tiles, size=max(1, round(spec.tiles / 3)), replace=False)}
    return [t if t.k in striped else _Tile(t.k, t.when, t.epsg, t.origin, t.angle, None) for t in plan]


class _Ground:
    """The value of every band at a ground point and date: base + texture + seasonal offset."""

    def __init__(self, spec: TileSetSpec, rng: np.random.Generator) -> None:
        wavelengths = np.linspace(450.0, 2200.0, spec.bands)
        knots = ([450, 550, 670, 800, 1600, 2200], [600, 900, 700, 3000, 2200, 1300])
        self.base = np.interp(wavelengths, *knots)
        waves = 4
        self.k = 2 * np.pi / rng.uniform(200.0, 2000.0, size=waves)
        direction = rng.uniform(0.0, np.pi, size=waves)
        self.kx, self.ky = self.k * np.cos(direction), self.k * np.sin(direction)
        self.phase = rng.uniform(0.0, 2 * np.pi, size=waves)
        weights = rng.uniform(0.3, 1.0, size=(spec.bands, waves))
        self.amplitude = 0.28 * self.base[:, None] * weights / weights.sum(axis=1, keepdims=True)
        self.season_amplitude = self.base * rng.uniform(0.08, 0.2, size=spec.bands)
        self.season_phase = float(rng.uniform(60.0, 120.0))

    def season(self, when: datetime) -> np.ndarray:
        doy = when.timetuple().tm_yday + when.hour / 24
        return self.season_amplitude * math.sin(2 * math.pi * (doy - self.season_phase) / 365.25)

    def values(self, east: np.ndarray, north: np.ndarray, when: datetime) -> np.ndarray:
        """(bands, *east.shape) int16 values at reference-frame coordinates ``east``, ``north``."""
        sines = np.sin(east[..., None] * self.kx + north[..., None] * self.ky + self.phase)  # (..., waves)
        texture = np.moveaxis(sines @ self.amplitude.T, -1, 0)
        value = self.base.reshape(-1, *[1] * east.ndim) + texture + self.season(when).reshape(-1, *[1] * east.ndim)
        return np.clip(np.rint(value), 200, 6000).astype(np.int16)


def _render(spec: TileSetSpec, tile: _Tile, ground: _Ground, to_ref: dict[int, Transformer]) -> np.ndarray:
    centres = tile.origin[0] + (np.arange(spec.size) + 0.5) * spec.resolution
    rows = tile.origin[1] - (np.arange(spec.size) + 0.5) * spec.resolution
    x, y = np.meshgrid(centres, rows)
    if tile.epsg != REFERENCE_EPSG:
        east, north = to_ref[tile.epsg].transform(x.ravel(), y.ravel())
        x, y = np.asarray(east).reshape(x.shape), np.asarray(north).reshape(y.shape)
    data = ground.values(x, y, tile.when)
    data[:, ~_footprint_mask(spec, tile.angle)] = NODATA
    if tile.stripe is not None:
        data[:, tile.stripe[0] : tile.stripe[1], :] = NODATA
    return data


def _write_tif(path: Path, data: np.ndarray, spec: TileSetSpec, tile: _Tile) -> None:
    layout: dict[str, Any] = {"tiled": True, "blockxsize": 256, "blockysize": 256} if spec.size >= 256 else {}
    profile = {"driver": "GTiff", "width": spec.size, "height": spec.size, "count": spec.bands, "dtype": "int16",
               "crs": CRS.from_epsg(tile.epsg), "nodata": NODATA, "compress": "deflate", **layout,
               "transform": from_origin(*tile.origin, spec.resolution, spec.resolution)}  # fmt: skip
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = tuple(f"B{b + 1}" for b in range(spec.bands))
        dst.update_tags(TIFFTAG_DATETIME=f"{tile.when:%Y:%m:%d %H:%M:%S}", SENSOR=SENSOR)


def _sensor_yaml(spec: TileSetSpec) -> str:
    lines = ["name: hsi", "kind: optical", "dtype: int16", "scale: 10000", "offset: 0", f"nodata: {NODATA}",
             "units: surface reflectance x 10000", "product: L2A", "bands:"]  # fmt: skip
    for b, nm in enumerate(np.linspace(450.0, 2200.0, spec.bands)):
        lines.append(f"  - {{name: B{b + 1}, wavelength_nm: {round(float(nm), 1):g}, gsd_m: {spec.resolution:g}}}")
    return "\n".join(lines) + "\n"


def _stac_item(spec: TileSetSpec, tile: _Tile, stem: str, to_lonlat: Transformer) -> dict[str, Any]:
    ring = [tuple(round(c, 9) for c in to_lonlat.transform(x, y)) for x, y in _corners(spec, tile)]
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": ["https://stac-extensions.github.io/projection/v1.1.0/schema.json"],
        "id": stem,
        "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in [*ring, ring[0]]]]},
        "bbox": [min(lons), min(lats), max(lons), max(lats)],
        "properties": {
            "datetime": f"{tile.when:%Y-%m-%dT%H:%M:%SZ}",
            "platform": SENSOR,
            "proj:epsg": tile.epsg,
            "gsd": spec.resolution,
        },
        "links": [],
        "assets": {"data": {"href": f"{stem}.tif", "type": "image/tiff; application=geotiff"}},
    }


def write_tile_set(out: Path, spec: TileSetSpec = TileSetSpec(), *, overwrite: bool = False) -> list[Path]:
    """Write the tile set of ``spec`` into folder ``out`` (see the module docstring); returns the GeoTIFF
    paths written, sorted. A non-empty ``out`` needs ``overwrite`` (stale ``SYN_*.tif`` are then removed)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ConfigError(f"'{out}' already holds files: choose another folder or pass overwrite=True")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"'{out}' is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    ground = _Ground(spec, rng)
    plan = _plan(spec, rng)
    duplicate = int(rng.integers(1, spec.tiles)) if spec.duplicate else None
    to_ref = {32633: Transformer.from_crs("EPSG:32633", f"EPSG:{REFERENCE_EPSG}", always_xy=True)}
    to_lonlat = {e: Transformer.from_crs(f"EPSG:{e}", "EPSG:4326", always_xy=True) for e in (32632, 32633)}
    written: list[tuple[Path, _Tile]] = []
    for tile in plan:
        path = out / f"{tile.stem}.tif"
        _write_tif(path, _render(spec, tile, ground, to_ref), spec, tile)
        written.append((path, tile))
        if tile.k == duplicate:
            copy = out / f"{tile.stem}_dup.tif"
            with atomic_path(copy) as tmp:
                shutil.copyfile(path, tmp)
            written.append((copy, tile))
    written.sort(key=lambda item: item[0].name)
    keep = {p.name for p, _ in written}
    for stale in out.glob("SYN_*.tif"):
        if stale.name not in keep:
            stale.unlink()
    write_text_atomic(out / "sensor.yaml", _sensor_yaml(spec))
    table = io.StringIO()
    rows = csv.writer(table, lineterminator="\n")
    rows.writerow(["path", "time", "sensor"])
    rows.writerows([p.name, f"{t.when:%Y-%m-%dT%H:%M:%SZ}", SENSOR] for p, t in written)
    write_text_atomic(out / "tiles.csv", table.getvalue())
    features = [_stac_item(spec, t, p.stem, to_lonlat[t.epsg]) for p, t in written]
    collection = {"type": "FeatureCollection", "features": features}
    write_text_atomic(out / "tiles.stac.json", json.dumps(collection, indent=1))
    return [p for p, _ in written]
