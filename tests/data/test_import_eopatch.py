"""EOPatch importer on fake eo-learn EOPatches, and a smoke test on the real sample in ../shared/data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rasterio.warp import transform as warp_transform

from eossl.data.importers import IMPORTERS
from eossl.data.sensors import SENSORS
from eossl.data.store import SampleStore
from eossl.errors import ImportDataError
from tests.conftest import SHARED_DATA
from tests.data.eopatch.data import INVALID, LULC_VALUES, ORIGIN, TIMESTAMPS, bands, lulc, write_eopatch

REAL = SHARED_DATA / "eopatch-slovenia" / "TestEOPatch"


def _import(source, store, **options):
    importer = IMPORTERS["eopatch"]()
    return importer.write(source, store, importer.config(workers=0, **options))


def test_eopatch_rows_per_date_with_bands_dem_and_label(tmp_path):
    patch = write_eopatch(tmp_path / "eopatch-0")
    store = SampleStore(_import(patch, tmp_path / "store", label="LULC"))
    assert len(store) == len(TIMESTAMPS)  # 12 x 12 <= 128 px: the whole patch, one row per date
    s2 = store.modalities["s2"]
    assert s2.bands == SENSORS["s2-l1c"].bands and s2.dtype == "float32" and s2.scale == 1
    assert s2.units == "reflectance" and s2.nodata is None
    assert store.modalities["dem"].kind == "elevation"  # data_timeless/DEM.npy.gz
    table = store.table
    assert list(table["time"]) == list(TIMESTAMPS) and store.dates.group == "location_id"
    assert set(table["location_id"]) == {"eopatch-0"} and set(table["tile"]) == {"eopatch-0"}
    values = store.read("s2")
    np.testing.assert_array_equal(values, np.moveaxis(bands(), -1, 1))
    dem = store.read("dem")
    assert (dem == dem[:1]).all() and dem[0, 0, 0, 0] == 300  # timeless: repeated on every date
    target = store.target("lulc")
    assert target.kind == "segmentation" and target.class_names == tuple(map(str, LULC_VALUES))
    expected = np.searchsorted(LULC_VALUES, lulc()[..., 0])
    np.testing.assert_array_equal(store.read("lulc")[2, 0], expected)
    lon, lat = warp_transform("EPSG:32633", "EPSG:4326", [ORIGIN[0] + 60], [ORIGIN[1] - 60])
    assert table["lat"][0] == pytest.approx(lat[0]) and table["lon"][0] == pytest.approx(lon[0])


def test_eopatch_valid_mask_windows_and_dates(tmp_path):
    patch = write_eopatch(tmp_path / "eopatch-0")
    store = SampleStore(
        _import(patch, tmp_path / "store", features={"BANDS": "s2"}, valid_mask="IS_DATA", patch_size=6, dates=3)
    )
    # 4 windows x 3 evenly spaced dates (0, 2, 3... of 4: 0, 2, 3 after rounding 0, 1.5, 3); date 0's window
    # (0, 0) is all no-data: filtered; (0, 6) is half no-data: kept with NaN
    report = json.loads((tmp_path / "store" / "import_report.json").read_text())
    assert len(store) == 11 and sum(report["filtered"].values()) == 1
    table = store.table.set_index("sample_key")
    assert sorted(set(table["date_index"])) == [0, 2, 3]
    assert "eopatch-0_0000_0000_000" not in table.index
    row = int(table.loc["eopatch-0_0000_0006_000", "sample_id"])
    values = store.read("s2", np.array([row]))[0]
    width = INVALID[1].stop - 6
    assert np.isnan(values[:, :, :width]).all() and not np.isnan(values[:, :, width:]).any()
    assert len(set(table["location_id"])) == 4 and list(store.modalities) == ["s2"]


def test_eopatch_pickled_timestamps_refused_and_bad_files_skipped(tmp_path):
    write_eopatch(tmp_path / "patches" / "eopatch-0")
    write_eopatch(tmp_path / "patches" / "eopatch-1", pickled_timestamps=True)
    truncated = write_eopatch(tmp_path / "patches" / "eopatch-2") / "data" / "BANDS.npy"
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(ImportDataError, match=r"eopatch-1/timestamp\.pkl': a pickled timestamps .* never unpickles"):
        _import(tmp_path / "patches", tmp_path / "store")
    assert not (tmp_path / "patches" / "UNPICKLED").exists()
    store = SampleStore(_import(tmp_path / "patches", tmp_path / "store", on_error="skip"))
    assert set(store.table["tile"]) == {"eopatch-0"} and len(store) == len(TIMESTAMPS)
    report = json.loads((tmp_path / "store" / "import_report.json").read_text())
    assert report["skipped"] == 2 and "BANDS.npy" in report["skipped_items"][1]["reason"]
    assert not (tmp_path / "patches" / "UNPICKLED").exists()


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real EOPatch sample not found at {REAL}")
def test_eopatch_real_slovenia_sample(tmp_path):
    store = SampleStore(_import(REAL, tmp_path / "store", features={"NDVI": "ndvi", "DEM": "dem"}, label="LULC"))
    assert len(store) == 68 and store.read("ndvi").shape == (68, 1, 101, 100)
    assert store.target("lulc").class_names == ("0", "1", "2", "3", "4", "8")
    label = store.read("lulc")[0, 0]
    lulc_raw = np.load(REAL / "mask_timeless" / "LULC.npy")[..., 0]
    np.testing.assert_array_equal(np.bincount(label.ravel()), np.unique(lulc_raw, return_counts=True)[1])
    ndvi, dem = store.read("ndvi"), store.read("dem")
    assert np.nanmin(ndvi) >= -1 and np.nanmax(ndvi) <= 1 and dem.min() > 600 and dem.max() < 900
    table = store.table
    assert table["time"].iloc[0].startswith("2015-07-11") and table["time"].is_monotonic_increasing
    assert 45.5 < table["lat"].iloc[0] < 46.5 and 14 < table["lon"].iloc[0] < 15
    cloudy = SampleStore(
        _import(REAL, tmp_path / "cloudy", features={"NDVI": "ndvi"}, invalid_mask="CLM", max_invalid=0.5)
    )
    clm = np.load(REAL / "mask" / "CLM.npy")[..., 0]
    assert len(cloudy) == int((clm.mean(axis=(1, 2)) <= 0.5).sum()) < 68
