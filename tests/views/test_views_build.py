"""``views build`` on the synthetic tile set (rotated footprints in two UTM zones, NaN stripes, a
duplicate): dated places, pixels equal to the tiles' at their coordinates, resume, dask, inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.warp import transform as warp_transform

from eossl.data.store import SampleStore
from eossl.data.synth.tiles import TileSetSpec, write_tile_set
from eossl.data.views.build import BuildRequest, build_views
from eossl.data.views.options import ViewsOptions, load_views_options
from eossl.data.views.plan import make_plan
from eossl.data.views.tiles import read_tiles
from eossl.errors import ConfigError, ImportDataError, StoreError

OPTIONS = ViewsOptions(patch_size=16, resampling="nearest")


@pytest.fixture(scope="module")
def tiles(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("views") / "tiles"
    write_tile_set(folder, TileSetSpec(tiles=16, size=96, seed=1))
    return folder


@pytest.fixture(scope="module")
def built(tiles: Path) -> tuple[Path, Path]:
    store, work = tiles.parent / "store", tiles.parent / "work"
    result = build_views(BuildRequest(tiles, store, OPTIONS, work=work, workers=0, keep_work=True))
    assert result.components_run == result.components == 2 and result.patches > 20
    return store, work


def test_places_hold_several_dates_of_distinct_tiles(built) -> None:
    store = SampleStore(built[0])
    table = store.table
    assert store.dates is not None and store.dates.group == "location_id" and store.dates.time == "time"
    per_place = table.groupby("location_id")
    assert (per_place.size() == per_place["n_dates"].first()).all()
    assert per_place["tile"].nunique().equals(per_place.size()) and per_place["time"].nunique().equals(per_place.size())
    assert per_place.size().max() >= 4 and (per_place.size() >= 2).sum() >= 10
    assert not table["tile"].str.endswith("_dup").any()  # the duplicated tile is dropped
    report = (built[0] / "views_report.json").read_text()
    assert '"nodata"' in report  # the NaN stripes and rotated edges skip patches ...
    assert not (store.read("hsi", np.arange(len(store))) == -32768).any()  # ... so no stored pixel is nodata


def test_patch_pixels_equal_the_tiles_pixels_at_their_coordinates(built, tiles) -> None:
    store = SampleStore(built[0])
    table = store.table
    crs_of = {p.stem: rasterio.open(p).crs.to_string() for p in tiles.glob("*.tif")}
    reprojected = table[[crs_of[t] != c for t, c in zip(table["tile"], table["crs"], strict=True)]]
    assert len(reprojected) and len(reprojected) < len(table)  # both zones: some patches are warped
    for rows in (table.index[:: max(1, len(table) // 12)], reprojected.index[:6]):
        for row in rows:
            record = table.loc[row]
            patch = store.read("hsi", np.array([row]))[0]
            size, res = patch.shape[-1], 30.0
            cols, lines = np.meshgrid(np.arange(size), np.arange(size))
            xs = record["x"] + (cols.ravel() + 0.5) * res
            ys = record["y"] - (lines.ravel() + 0.5) * res
            with rasterio.open(tiles / f"{record['tile']}.tif") as src:
                tx, ty = warp_transform(record["crs"], src.crs, xs, ys)
                expected = np.stack([v for v in src.sample(zip(tx, ty, strict=True))]).T.reshape(patch.shape)
            share = (expected == patch).mean()
            assert share == 1.0 if crs_of[record["tile"]] == record["crs"] else share > 0.97, (record["tile"], share)


def test_a_resumed_build_writes_the_same_store(built, tiles) -> None:
    store, work = built
    parts = sorted((work / "parts").iterdir())
    shutil.rmtree(parts[0])  # as if killed before the first component's part was complete
    again = tiles.parent / "again"
    result = build_views(BuildRequest(tiles, again, OPTIONS, work=work, workers=0, keep_work=True))
    assert result.components_run == 1
    _assert_same_store(store, again)


def test_dask_workers_write_the_same_store(built, tiles) -> None:
    store = tiles.parent / "dask"
    result = build_views(BuildRequest(tiles, store, OPTIONS, workers=2))
    assert result.where == "dask LocalCluster of 2 workers" and not (tiles.parent / "dask.views-work").exists()
    _assert_same_store(built[0], store)


def _assert_same_store(a: Path, b: Path) -> None:
    first, second = SampleStore(a), SampleStore(b)
    pd.testing.assert_frame_equal(first.table, second.table)
    rows = np.arange(len(first))
    assert np.array_equal(first.read("hsi", rows), second.read("hsi", rows))


def test_csv_stac_and_folder_list_the_same_tiles(tiles) -> None:
    folder, csv, stac = (read_tiles(s, OPTIONS) for s in (tiles, tiles / "tiles.csv", tiles / "tiles.stac.json"))
    for other in (csv, stac):
        assert [(t.id, t.crs, t.time) for t in other.tiles] == [(t.id, t.crs, t.time) for t in folder.tiles]
    assert {t.crs for t in folder.tiles} == {"EPSG:32632", "EPSG:32633"}
    plan = make_plan(tiles / "tiles.stac.json", OPTIONS)
    assert plan.statistics()["duplicates"] == 1 and plan.statistics()["expected_patches_with_dates"][">=2"] > 0


def test_bad_inputs_are_clear_errors(built, tiles, tmp_path) -> None:
    with pytest.raises(StoreError, match="already exists"):
        build_views(BuildRequest(tiles, built[0], OPTIONS, workers=0))
    with pytest.raises(ImportDataError, match="another plan"):
        build_views(BuildRequest(tiles, tmp_path / "s", OPTIONS.model_copy(update={"patch_size": 8}), work=built[1],
                                 workers=0))  # fmt: skip
    with pytest.raises(ConfigError, match="patch_sise"):
        load_views_options(None, patch_sise=3)
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_nodata: 2\n")
    with pytest.raises(ConfigError, match="max_nodata"):
        load_views_options(bad)
    listed = tmp_path / "tiles.csv"
    first = sorted(tiles.glob("*.tif"))[0]
    listed.write_text(f"path,time,sensor\n{first},2024-01-01,SYN\n{first},2024-02-01,SYN\n")
    assert len(read_tiles(listed, OPTIONS).left_out) == 1  # a file listed twice is left out, said why
    mixed = tmp_path / "mixed.csv"
    second = sorted(tiles.glob("*.tif"))[1]
    mixed.write_text(f"path,sensor\n{first},SYN\n{second},OTHER\n")
    with pytest.raises(ConfigError, match="several sensors"):
        read_tiles(mixed, OPTIONS)
    timeless = tmp_path / "timeless.csv"
    timeless.write_text(f"path,time\n{first},yesterday-ish\n")
    with pytest.raises(ImportDataError, match="not a date"):
        read_tiles(timeless, OPTIONS)
