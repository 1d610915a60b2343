"""Synthetic overlapping tiles (``eossl.data.synth.tiles``): rotated footprints in two UTM zones, values
tied to the ground and the date, nodata stripes, a byte-identical duplicate and the CSV / STAC / sensor files."""

from __future__ import annotations

import csv
import itertools
import json
import time
from datetime import datetime

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from shapely.geometry import Point, shape

from eossl.data.sensors import sensor_from_yaml
from eossl.data.synth.tiles import TileSetSpec, write_tile_set
from eossl.errors import ConfigError

NODATA = -32768


@pytest.fixture(scope="module")
def tile_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiles") / "set"
    start = time.perf_counter()
    paths = write_tile_set(out)
    return out, paths, time.perf_counter() - start


def _read(path):
    """(data, EPSG code, transform, tags, other properties) of a GeoTIFF."""
    with rasterio.open(path) as src:
        meta = {"nodata": src.nodata, "descriptions": src.descriptions, "compression": src.compression.name}
        return src.read(), src.crs.to_epsg(), src.transform, src.tags(), meta


def test_files_counts_and_metadata(tile_set):
    out, paths, seconds = tile_set
    spec = TileSetSpec()
    assert seconds < 2.0
    assert paths == sorted(paths) and len(paths) == spec.tiles + 1
    assert sorted(out.glob("*.tif")) == paths
    assert len([p for p in paths if p.stem.endswith("_dup")]) == 1
    assert not list(out.glob(".*"))  # no temporary files left behind
    with open(out / "tiles.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["path"] for r in rows] == [p.name for p in paths] and {r["sensor"] for r in rows} == {"SYN"}
    features = json.loads((out / "tiles.stac.json").read_text())
    assert features["type"] == "FeatureCollection" and len(features["features"]) == len(paths)
    for row, item, path in zip(rows, features["features"], paths, strict=True):
        data, epsg, _, tags, meta = _read(path)
        assert data.dtype == np.int16 and meta["nodata"] == NODATA and meta["descriptions"] == ("B1", "B2", "B3", "B4")
        assert meta["compression"] == "deflate" and data.shape == (spec.bands, spec.size, spec.size)
        valid = data[data != NODATA]
        assert valid.min() >= 200 and valid.max() <= 6000
        when = datetime.strptime(path.stem.split("_")[1], "%Y%m%dT%H%M%S")
        assert tags["TIFFTAG_DATETIME"] == f"{when:%Y:%m:%d %H:%M:%S}"
        assert row["time"] == item["properties"]["datetime"] == f"{when:%Y-%m-%dT%H:%M:%SZ}"
        assert item["type"] == "Feature" and item["stac_version"] == "1.0.0" and item["id"] == path.stem
        assert item["properties"]["proj:epsg"] == epsg and item["properties"]["gsd"] == spec.resolution
        assert item["assets"]["data"]["href"] == path.name
        ring = item["geometry"]["coordinates"][0]
        assert len(ring) == 5 and ring[0] == ring[-1]
    times = [r["time"] for r in rows if not r["path"].endswith("_dup.tif")]
    assert len(set(times)) == spec.tiles


def test_two_utm_zones_and_a_footprint_across_the_boundary(tile_set):
    out, paths, _ = tile_set
    assert {_read(p)[1] for p in paths} == {32632, 32633}
    items = json.loads((out / "tiles.stac.json").read_text())["features"]
    assert any(i["bbox"][0] < 12.0 < i["bbox"][2] for i in items)
    for item in items:
        lon = np.mean([c[0] for c in item["geometry"]["coordinates"][0][:4]])
        assert item["properties"]["proj:epsg"] == (32632 if lon < 12.0 else 32633)


def test_rotated_footprint_matches_the_stac_geometry(tile_set):
    out, paths, _ = tile_set
    items = {i["id"]: i for i in json.loads((out / "tiles.stac.json").read_text())["features"]}
    rng = np.random.default_rng(1)
    for path in paths:
        data, epsg, transform, _, _ = _read(path)
        valid = data[0] != NODATA
        assert not valid[0, 0] and not valid[0, -1] and not valid[-1, 0] and not valid[-1, -1]
        geometry = shape(items[path.stem]["geometry"]).buffer(1e-7)
        to_lonlat = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)
        rr, cc = np.nonzero(valid)
        pick = rng.choice(len(rr), size=20, replace=False)
        xs, ys = rasterio.transform.xy(transform, rr[pick], cc[pick])
        lons, lats = to_lonlat.transform(xs, ys)
        assert all(geometry.contains(Point(lon, lat)) for lon, lat in zip(lons, lats, strict=True))
        corner_lon, corner_lat = to_lonlat.transform(*rasterio.transform.xy(transform, 0, 0))
        assert not geometry.contains(Point(corner_lon, corner_lat))


def test_centre_is_valid_outside_stripes(tile_set):
    _, paths, _ = tile_set
    for path in paths:
        data = _read(path)[0][0]
        n = data.shape[0]
        full_rows = np.flatnonzero((data == NODATA).all(axis=1))
        centre_row = next(r for r in range(n // 2, n) if r not in full_rows)
        assert data[centre_row, n // 2] != NODATA


def test_same_ground_differs_by_a_season_offset_and_the_duplicate_is_a_copy(tile_set):
    _, paths, _ = tile_set
    tiles = {p: _read(p) for p in paths if not p.stem.endswith("_dup")}
    checked = 0
    for a, b in itertools.combinations(tiles, 2):
        (da, ea, ta, _, _), (db, eb, tb, _, _) = tiles[a], tiles[b]
        if ea != eb:
            continue
        rr, cc = np.nonzero((da != NODATA).all(axis=0))
        xs, ys = rasterio.transform.xy(ta, rr, cc)
        rb, cb = rasterio.transform.rowcol(tb, xs, ys)
        rb, cb = np.asarray(rb), np.asarray(cb)
        inside = (rb >= 0) & (rb < db.shape[1]) & (cb >= 0) & (cb < db.shape[2])
        va, vb = da[:, rr[inside], cc[inside]], db[:, rb[inside], cb[inside]]
        both = (vb != NODATA).all(axis=0)
        if both.sum() < 200:
            continue
        diff = vb[:, both].astype(np.int32) - va[:, both].astype(np.int32)
        assert (diff.max(axis=1) - diff.min(axis=1) <= 2).all(), (a.name, b.name)
        assert np.abs(diff).max() > 2  # different dates: a season offset in at least one band
        assert va[:, both].std(axis=1).min() > 50  # and the ground is textured, not flat
        checked += 1
    assert checked >= 3
    (dup,) = [p for p in paths if p.stem.endswith("_dup")]
    original = dup.with_name(dup.name.replace("_dup.tif", ".tif"))
    assert original in paths and original != paths[0] and dup.read_bytes() == original.read_bytes()


def test_some_tiles_have_a_nodata_stripe_inside_the_footprint(tile_set):
    _, paths, _ = tile_set
    striped = 0
    for path in paths:
        data = _read(path)[0]
        has_data = (data != NODATA).any(axis=(0, 2))
        rows = np.flatnonzero(has_data)
        inner = ~has_data[rows[0] : rows[-1] + 1]
        if inner.any():
            assert 3 <= inner.sum() <= 8
            striped += 1
    assert 1 <= striped < len(paths)


def test_deterministic_for_a_seed(tmp_path):
    spec = TileSetSpec(tiles=4, size=48)
    first = write_tile_set(tmp_path / "a", spec)
    again = write_tile_set(tmp_path / "b", spec)
    other = write_tile_set(tmp_path / "c", TileSetSpec(tiles=4, size=48, seed=1))
    assert [p.name for p in first] == [p.name for p in again]
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(first, again, strict=True))
    assert (tmp_path / "a" / "tiles.stac.json").read_bytes() == (tmp_path / "b" / "tiles.stac.json").read_bytes()
    assert first[0].read_bytes() != other[0].read_bytes()


def test_options_stripes_and_duplicate_off(tmp_path):
    spec = TileSetSpec(tiles=3, size=32, bands=2, nan_stripes=False, duplicate=False)
    paths = write_tile_set(tmp_path / "plain", spec)
    assert len(paths) == 3 and not any(p.stem.endswith("_dup") for p in paths)
    for path in paths:
        data = _read(path)[0]
        has_data = (data != NODATA).any(axis=(0, 2))
        rows = np.flatnonzero(has_data)
        assert has_data[rows[0] : rows[-1] + 1].all()


def test_sensor_yaml_loads(tile_set, tmp_path):
    out, _, _ = tile_set
    sensor = sensor_from_yaml(out / "sensor.yaml")
    assert sensor.bands == ("B1", "B2", "B3", "B4") and sensor.dtype == "int16" and sensor.nodata == NODATA
    assert sensor.wavelengths_nm[0] == 450 and sensor.wavelengths_nm[-1] == 2200 and sensor.scale == 10000
    write_tile_set(tmp_path / "seven", TileSetSpec(tiles=2, size=32, bands=7))
    assert len(sensor_from_yaml(tmp_path / "seven" / "sensor.yaml").bands) == 7


def test_existing_folder_needs_overwrite(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "note.txt").write_text("keep")
    with pytest.raises(ConfigError, match="busy"):
        write_tile_set(out, TileSetSpec(tiles=2, size=32))
    write_tile_set(out, TileSetSpec(tiles=4, size=32), overwrite=True)
    fewer = write_tile_set(out, TileSetSpec(tiles=2, size=32), overwrite=True)
    assert sorted(out.glob("*.tif")) == fewer and (out / "note.txt").read_text() == "keep"
    with pytest.raises(ConfigError):
        TileSetSpec(tiles=1)
