"""SSL4EO-S12 importer on a fake SSL4EO-S12 folder in the real layout."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import rasterio

from eossl.data.importers import IMPORTERS
from eossl.data.store import SampleStore
from eossl.errors import ImportDataError
from tests.data.ssl4eo_s12.data import S1_DATES, SEASON_DATES, s1_product, s2_product, s2_value, write_ssl4eo_s12


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Two locations, four timestamps of s1, s2c and s2a, written once (read-only for the tests)."""
    return write_ssl4eo_s12(tmp_path_factory.mktemp("ssl4eo") / "ssl4eo", locations=2, size=12)


def _import(source, store, **options):
    importer = IMPORTERS["ssl4eo-s12"]()
    return importer.write(source, store, importer.config(workers=0, size=12, **options))


def test_ssl4eo_s12_rows_pair_products_by_date_with_dates_declared(source, tmp_path):
    store = SampleStore(_import(source, tmp_path / "store"))
    assert len(store) == 8
    assert set(store.modalities) == {"s1", "s2_l1c", "s2_l2a"}
    assert store.modalities["s2_l1c"].num_bands == 13 and store.modalities["s2_l1c"].product == "L1C"
    assert store.modalities["s2_l2a"].num_bands == 12 and "B10" not in store.modalities["s2_l2a"].bands
    assert store.modalities["s1"].units == "dB" and store.modalities["s2_l1c"].offset == 0
    assert store.dates.group == "location_id" and store.dates.time == "time"
    assert store.split is None and not store.targets
    table = store.table
    assert table.groupby("location_id").size().to_dict() == {0: 4, 1: 4}
    loc1 = table[table["location_id"] == 1].reset_index(drop=True)
    expected_times = [f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in SEASON_DATES]
    assert loc1["time"].tolist() == expected_times
    assert loc1["season"].tolist() == ["MAM", "JJA", "SON", "DJF"]
    assert loc1["s1_time"].tolist() == [f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in S1_DATES]  # by date, not by name
    rows = loc1["sample_id"].to_numpy()
    l1c, l2a, s1 = store.read("s2_l1c", rows), store.read("s2_l2a", rows), store.read("s1", rows)
    assert l1c.shape == (4, 13, 12, 12) and l1c.dtype == np.uint16 and s1.dtype == np.float32
    for t in range(4):
        # bands in order (B10 the 11th of L1C, absent from L2A), 20/60 m bands resampled to 12 x 12
        np.testing.assert_allclose(l1c[t].mean(axis=(1, 2)), [s2_value(b, t, 1) for b in range(13)], atol=5)
        np.testing.assert_allclose(l2a[t].mean(axis=(1, 2)), [s2_value(b, t, 1) for b in range(12)], atol=5)
        np.testing.assert_allclose(s1[t].mean(axis=(1, 2)), [-10 - t - 0.1, -20 - t - 0.1], atol=0.05)
    with rasterio.open(source / "s2c" / "0000001" / s2_product(SEASON_DATES[2]) / "B8.tif") as f:
        np.testing.assert_array_equal(l1c[2, 7], f.read(1))
    assert 40 < table["lat"].mean() < 41.5 and 14 < table["lon"].mean() < 16
    assert table["s2_l1c_product"].iloc[0] == s2_product(SEASON_DATES[0])


def test_ssl4eo_s12_one_s2_level_is_named_s2(source):
    importer = IMPORTERS["ssl4eo-s12"]()
    plan = importer.plan(source, importer.config(products=["s2a", "s1"]))
    assert set(plan.modalities) == {"s1", "s2"} and plan.modalities["s2"].product == "L2A"
    assert plan.modalities["s2"].num_bands == 12 and plan.capacity == 8


def test_ssl4eo_s12_bad_locations_are_named_skipped_or_filtered(tmp_path):
    source = write_ssl4eo_s12(tmp_path / "ssl4eo", locations=5, size=6, products=("s1", "s2c"), timestamps=2)
    s2c, s1 = source / "s2c", source / "s1"
    (s2c / "0000001" / s2_product(SEASON_DATES[0])).rename(s2c / "0000001" / s2_product("20220323"))  # offset -1000
    (s2c / "0000002" / s2_product(SEASON_DATES[1]) / "B8A.tif").unlink()
    shutil.rmtree(s1 / "0000003" / s1_product("S1B", S1_DATES[1]))  # 2 S2 but 1 S1 products
    shutil.rmtree(s1 / "0000004" / s1_product("S1B", S1_DATES[1]))  # one timestamp left: filtered
    shutil.rmtree(s2c / "0000004" / s2_product(SEASON_DATES[1]))
    with pytest.raises(ImportDataError, match=r"0000001/20220323.*offset -1000"):
        _import(source, tmp_path / "store")
    importer = IMPORTERS["ssl4eo-s12"]()
    options = importer.config(workers=0, size=None, on_error="skip", seasons=2)
    store = SampleStore(importer.write(source, tmp_path / "store", options))
    assert store.table["location_id"].tolist() == [0, 0]
    assert store.read("s2", np.array([0])).shape == (1, 13, 6, 6)  # the finest (10 m) grid
    report = json.loads((tmp_path / "store" / "import_report.json").read_text())
    assert report["skipped"] == 3 and report["filtered"] == {"fewer than 2 timestamps": 1}
    reasons = [s["reason"] for s in report["skipped_items"]]
    assert "offset -1000" in reasons[0] and "0000002/" in reasons[1] and "B8A.tif" in reasons[1]
    assert "location 0000003: the products do not pair by date order (1 in" in reasons[2]


def test_ssl4eo_s12_refuses_a_missing_product_folder(tmp_path):
    (tmp_path / "ssl4eo" / "s2c").mkdir(parents=True)
    with pytest.raises(ImportDataError, match=r"missing \['s1'\]"):
        _import(tmp_path / "ssl4eo", tmp_path / "store", products=["s1"])
