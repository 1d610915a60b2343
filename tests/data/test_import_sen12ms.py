"""SEN12MS importer on a fake SEN12MS folder in the real layout."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import rasterio

from eossl.data.importers import IMPORTERS
from eossl.data.importers._sen12ms_common import DFC_CLASSES, IGBP_CLASSES
from eossl.data.store import SampleStore
from eossl.errors import ImportDataError
from tests.data.sen12ms.data import HOLDOUT_SCENE, patch_name, write_sen12ms


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """The fake SEN12MS with the toolbox's list files and the hold-out scenes file (read-only)."""
    return write_sen12ms(tmp_path_factory.mktemp("sen12ms") / "SEN12MS", size=16, holdout_file=True)


def _import(source, store, **options):
    importer = IMPORTERS["sen12ms"]()
    return importer.write(source, store, importer.config(workers=0, **options))


def test_sen12ms_store_holds_s1_s2_igbp_and_the_listed_split(source, tmp_path):
    store = SampleStore(_import(source, tmp_path / "store"))
    assert len(store) == 15  # 16 patches, one not in the lists
    assert store.modalities["s2"].num_bands == 13 and store.modalities["s2"].product == "L1C"
    assert store.modalities["s1"].bands == ("VV", "VH") and store.modalities["s1"].units == "dB"
    igbp, majority = store.target("igbp"), store.target("igbp_majority")
    assert igbp.kind == "segmentation" and igbp.class_names == IGBP_CLASSES and igbp.ignore_index == 255
    assert igbp.strata == "igbp_majority" and majority.kind == "single-label"
    table = store.table.set_index("sample_key")
    assert "ROIs1868_summer_3_p30" not in table.index
    assert store.split == "split" and (table["split"] == "test").sum() == 8
    assert set(table.loc[table["split"] == "test", "scene"]) == {HOLDOUT_SCENE}
    assert table.loc["ROIs1970_fall_12_p7", "location_id"] == "ROIs1970_fall_12"
    assert table.loc["ROIs1970_fall_12_p7", "season"] == "fall"
    assert table.groupby("location_id")["split"].nunique().max() == 1  # a scene is in one split
    row = int(table.loc["ROIs1970_fall_12_p7", "sample_id"])
    folder = source / "ROIs1970_fall"
    with rasterio.open(folder / "s2_12" / patch_name("ROIs1970_fall", "s2", 12, 7)) as f:
        np.testing.assert_array_equal(store.read("s2", np.array([row]))[0], f.read())
    s1 = store.read("s1", np.array([row]))[0]
    assert np.isnan(s1[1, 0, 0]) and np.isfinite(s1[0]).all() and -11 < np.nanmean(s1[0]) < -9
    mask = store.read("igbp", np.array([row]))[0, 0]
    assert mask.dtype == np.uint8 and mask[5, 5] == 11 and mask[5, 0] == 0 and mask[0, 5] == 16 and mask[-1, -1] == 255
    assert table.loc["ROIs1970_fall_12_p7", "igbp_majority"] == 11  # croplands
    assert table.loc["ROIs1970_fall_12_p30", "igbp_majority"] == 9  # grasslands
    assert -18 < table["lat"].mean() < -16 and 37 < table["lon"].mean() < 41


def test_sen12ms_simplified_classes_and_hold_out_scenes(source, tmp_path):
    only_holdout = shutil.copytree(source, tmp_path / "SEN12MS", ignore=shutil.ignore_patterns("*_list.txt"))
    store = SampleStore(_import(only_holdout, tmp_path / "store", classes="simplified"))
    assert len(store) == 16 and (store.table["split"] == "test").sum() == 8
    assert store.target("igbp").class_names == DFC_CLASSES
    mask = store.read("igbp", np.array([0]))[0, 0]
    assert mask[5, 5] == 5 and mask[5, 0] == 0 and mask[0, 5] == 9  # croplands, forest, water
    assert set(store.table["igbp_majority"]) == {5, 3}  # croplands, grassland
    store = SampleStore(_import(only_holdout, tmp_path / "store2", split="none"))
    assert store.split is None and "split" not in store.table


def test_sen12ms_bad_files_are_named_or_skipped(source, tmp_path):
    source = shutil.copytree(source, tmp_path / "SEN12MS")
    truncated = source / "ROIs1158_spring" / "s2_3" / patch_name("ROIs1158_spring", "s2", 3, 30)
    truncated.write_bytes(truncated.read_bytes()[:400])
    with pytest.raises(ImportDataError, match=r"ROIs1158_spring_s2_3_p30\.tif"):
        _import(source, tmp_path / "store")
    label = source / "ROIs2017_winter" / "lc_3" / patch_name("ROIs2017_winter", "lc", 3, 7)
    with rasterio.open(label, "r+") as f:
        values = f.read()
        values[0, 4, 4] = 42
        f.write(values)
    store = SampleStore(_import(source, tmp_path / "store", on_error="skip"))
    assert len(store) == 13
    report = json.loads((tmp_path / "store" / "import_report.json").read_text())
    assert report["skipped"] == 2
    reasons = " ".join(s["reason"] for s in report["skipped_items"])
    assert "ROIs1158_spring_s2_3_p30.tif" in reasons and "unexpected class values [42]" in reasons
    assert "ROIs2017_winter_lc_3_p7.tif" in reasons
