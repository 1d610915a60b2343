"""DFC2020 importer on a fake DFC2020 folder in the real layout."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import rasterio

from eossl.data.importers import IMPORTERS
from eossl.data.importers._sen12ms_common import DFC_CLASSES
from eossl.data.importers.raster import write_geotiff
from eossl.data.store import SampleStore
from eossl.errors import ImportDataError
from tests.data.dfc2020.data import file_path, write_dfc2020


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Four validation and two test patches (read-only; tests copy what they change)."""
    return write_dfc2020(tmp_path_factory.mktemp("dfc2020") / "DFC2020", size=16)


def _import(source, store, **options):
    importer = IMPORTERS["dfc2020"]()
    return importer.write(source, store, importer.config(workers=0, **options))


def test_dfc2020_store_holds_s1_s2_land_cover_and_split(source, tmp_path):
    store = SampleStore(_import(source, tmp_path / "store"))
    assert len(store) == 6 and set(store.modalities) == {"s1", "s2"}
    assert store.modalities["s2"].num_bands == 13 and store.modalities["s2"].product == "L1C"
    target = store.target("land_cover")
    assert target.kind == "segmentation" and target.class_names == DFC_CLASSES and target.ignore_index == 255
    table = store.table.set_index("sample_key")
    assert store.split == "split"
    assert table["split"].value_counts().to_dict() == {"train": 4, "test": 2}
    assert table.loc["ROIs0000_test_0_p3", "set"] == "test"
    row = int(table.loc["ROIs0000_validation_0_p1", "sample_id"])
    with rasterio.open(file_path(source, "validation", "s2", 1)) as f:
        np.testing.assert_array_equal(store.read("s2", np.array([row]))[0], f.read())
    with rasterio.open(file_path(source, "validation", "s1", 1)) as f:
        s1 = store.read("s1", np.array([row]))[0]
        assert s1.dtype == np.float32
        np.testing.assert_allclose(s1, f.read(), rtol=1e-6)
    mask = store.read("land_cover", np.array([row]))[0, 0]
    assert mask[0, 0] == 0 and mask[0, -1] == 9 and mask[-1, 0] == 8  # Forest, Water, Barren
    mask = store.read("land_cover", np.array([int(table.loc["ROIs0000_validation_0_p2", "sample_id"])]))[0, 0]
    assert mask[0, -1] == 5  # Croplands
    # neighbouring patches are one place; the others are places of their own
    places = table["location_id"]
    assert places["ROIs0000_validation_0_p0"] == places["ROIs0000_validation_0_p1"]
    assert places.nunique() == 5
    assert 48 < table["lat"].mean() < 49 and 8.5 < table["lon"].mean() < 10.5


def test_dfc2020_eight_classes_and_patch_places(source, tmp_path):
    store = SampleStore(_import(source, tmp_path / "store", classes="dfc-8", place_km=0))
    target = store.target("land_cover")
    assert "Savanna" not in target.class_names and "Snow/Ice" not in target.class_names
    assert len(target.class_names) == 8
    table = store.table.set_index("sample_key")
    mask = store.read("land_cover", np.array([int(table.loc["ROIs0000_validation_0_p1", "sample_id"])]))[0, 0]
    assert mask[0, 0] == 0 and mask[0, -1] == 7 and mask[-1, 0] == 6  # Forest, Water, Barren
    assert (table["location_id"] == table.index).all()


def test_dfc2020_mismatched_sizes_and_missing_label_are_named_or_skipped(source, tmp_path):
    source = shutil.copytree(source, tmp_path / "DFC2020")
    small = file_path(source, "test", "s1", 3)
    write_geotiff(small, np.zeros((2, 8, 8), np.float64), crs="EPSG:32632")
    with pytest.raises(ImportDataError, match=r"ROIs0000_test_s1_0_p3\.tif' 8x8.*ROIs0000_test_s2_0_p3\.tif' 16x16"):
        _import(source, tmp_path / "store")
    missing = file_path(source, "validation", "dfc", 2)
    missing.unlink()
    store = SampleStore(_import(source, tmp_path / "store", on_error="skip"))
    assert len(store) == 4
    report = json.loads((tmp_path / "store" / "import_report.json").read_text())
    assert report["skipped"] == 2
    assert f"'{missing}': file does not exist" in report["skipped_items"][0]["reason"]
