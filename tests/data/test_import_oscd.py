"""OSCD importer on a fake OSCD folder in the real layout (per-band files at 10/20/60 m, shifted dates)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from rasterio.warp import transform as warp_transform

from eossl.data.importers import IMPORTERS
from eossl.data.importers.raster import read_raster, write_geotiff
from eossl.data.store import SampleStore
from eossl.errors import ImportDataError
from tests.data.oscd.data import BANDS, CRS, IMAGES, LABELS, ORIGINS, PRODUCTS, SHIFT, change_codes, value, write_oscd

SIZE, PATCH = 48, 16


def _import(source, store, **options):
    importer = IMPORTERS["oscd"]()
    return importer.write(source, store, importer.config(workers=0, patch_size=PATCH, **options))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return write_oscd(tmp_path_factory.mktemp("oscd") / "OSCD", size=SIZE)


def test_oscd_aligns_dates_through_georeferencing(source, tmp_path):
    beta_tif = source / LABELS["test"] / "beta" / "cm" / "beta-cm.tif"
    copy = tmp_path / "OSCD"
    shutil.copytree(source, copy)
    (copy / beta_tif.relative_to(source)).unlink()  # beta's change map comes from cm.png (0/255)
    store = SampleStore(_import(copy, tmp_path / "store"))
    # 3 x 3 patches per city; date 2 starts 2 rows / 3 columns in, so the first patch row and column
    # (over 10% outside the overlap) are filtered: 4 patches per city
    assert len(store) == 8
    report = json.loads((tmp_path / "store" / "import_report.json").read_text())
    assert sum(report["filtered"].values()) == 10
    assert any("offset 0" in note for note in report["notes"])
    for name in ("s2", "s2_after"):
        assert store.modalities[name].bands[8] == "B8A" and store.modalities[name].num_bands == 13
        assert store.modalities[name].product == "L1C" and store.modalities[name].offset == 0
    target = store.target("change")
    assert target.kind == "change" and target.class_names == ("no change", "change")
    assert store.pairs["s2_change"].after == "s2_after"
    table = store.table.set_index("sample_key")
    row = int(table.loc["alpha_0016_0016", "sample_id"])
    s2, after, change = (store.read(n, np.array([row]))[0] for n in ("s2", "s2_after", "change"))
    rows, cols = np.mgrid[16:32, 16:32]
    for b, band in enumerate(BANDS):
        if band in ("B02", "B03", "B04", "B08"):  # 10 m: exact values, date 2 shifted back onto date 1's pixels
            np.testing.assert_array_equal(s2[b], value(1, band, rows, cols, SIZE))
            np.testing.assert_array_equal(after[b], value(2, band, rows - SHIFT[0], cols - SHIFT[1], SIZE))
    b05 = source / IMAGES / "alpha" / "imgs_2" / f"{PRODUCTS[1]}_B05.tif"
    expected = read_raster(b05, out_shape=(SIZE, SIZE))[0]  # date 2's B05 on its own 10 m grid
    np.testing.assert_array_equal(after[4], expected[16 - SHIFT[0] : 32 - SHIFT[0], 16 - SHIFT[1] : 32 - SHIFT[1]])
    assert s2[8].min() >= 2500 * 9 and s2[8].max() < 2500 * 10  # B8A after B08
    np.testing.assert_array_equal(change[0], change_codes(SIZE)[16:32, 16:32] - 1)
    beta = int(table.loc["beta_0032_0032", "sample_id"])
    np.testing.assert_array_equal(store.read("change", np.array([beta]))[0, 0], change_codes(SIZE)[32:, 32:] - 1)
    alpha = table.loc["alpha_0016_0016"]
    assert alpha["time"] == "2015-12-11" and alpha["time_after"] == "2018-03-30"
    assert alpha["location_id"] == "alpha" and alpha["tile"] == "alpha"
    assert store.split == "split" and set(table["split"]) == {"train", "test"}
    assert (table.loc[table["location_id"] == "beta", "split"] == "test").all()
    x, y = ORIGINS["alpha"][0] + 10 * 24, ORIGINS["alpha"][1] - 10 * 24
    lon, lat = warp_transform(CRS, "EPSG:4326", [x], [y])
    assert alpha["lat"] == pytest.approx(lat[0]) and alpha["lon"] == pytest.approx(lon[0])


def test_oscd_missing_band_file_is_named_or_skipped(source, tmp_path):
    copy = tmp_path / "OSCD"
    shutil.copytree(source, copy)
    (copy / IMAGES / "beta" / "imgs_2" / f"{PRODUCTS[1]}_B05.tif").unlink()
    with pytest.raises(ImportDataError, match=r"beta/imgs_2'.*missing band files B05"):
        _import(copy, tmp_path / "store")
    assert not (tmp_path / "store").exists()
    store = SampleStore(_import(copy, tmp_path / "store", on_error="skip"))
    assert set(store.table["location_id"]) == {"alpha"} and len(store) == 4
    report = json.loads((tmp_path / "store" / "import_report.json").read_text())
    assert report["skipped"] == 1 and "B05" in report["skipped_items"][0]["reason"]


def test_oscd_bad_change_map_is_named(source, tmp_path):
    copy = tmp_path / "OSCD"
    shutil.copytree(source, copy)
    bad = copy / LABELS["train"] / "alpha" / "cm" / "alpha-cm.tif"
    write_geotiff(bad, np.full((SIZE, SIZE), 3, np.uint8), crs=None)
    with pytest.raises(ImportDataError, match=r"alpha-cm\.tif': expected values 1 \(no change\) and 2"):
        _import(copy, tmp_path / "store")
    write_geotiff(bad, np.ones((SIZE - 6, SIZE), np.uint8), crs=None)
    with pytest.raises(ImportDataError, match=r"alpha-cm\.tif': change map of 42x48 pixels"):
        _import(copy, tmp_path / "store")


def test_oscd_without_test_labels_stores_ignore_values(source, tmp_path):
    copy = tmp_path / "OSCD"
    shutil.copytree(source, copy)
    shutil.rmtree(copy / LABELS["test"])
    georeferenced = copy / LABELS["train"] / "alpha" / "cm" / "alpha-cm.tif"  # a map with a CRS is reprojected
    x0, y0 = ORIGINS["alpha"]
    write_geotiff(georeferenced, change_codes(SIZE)[8:, 4:40], crs=CRS, origin=(x0 + 40, y0 - 80))
    store = SampleStore(_import(copy, tmp_path / "store", cities=["alpha", "beta"]))
    table = store.table
    beta = table.index[table["location_id"] == "beta"].to_numpy()
    assert len(beta) == 4 and (store.read("change", beta) == 255).all()
    assert not table.loc[beta, "labelled"].any() and table.loc[table["location_id"] == "alpha", "labelled"].all()
    assert store.target("change").ignore_index == 255
    alpha = store.read("change", np.flatnonzero(table["sample_key"] == "alpha_0016_0016"))[0, 0]
    np.testing.assert_array_equal(alpha, change_codes(SIZE)[8:, 4:40][8:24, 12:28] - 1)
    first = store.read("change", np.flatnonzero(table["sample_key"] == "alpha_0016_0032"))[0, 0]
    assert (first[:, -8:] == 255).all() and (first[:, :-8] < 2).all()  # beyond the map's extent: no label
    notes = json.loads((tmp_path / "store" / "import_report.json").read_text())["notes"]
    assert any("Test Labels' not found" in n for n in notes)
