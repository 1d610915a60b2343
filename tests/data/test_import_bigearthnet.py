"""BigEarthNet importer on fake v1.0 and v2.0 folders in the real layouts, and on the real example patches."""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform

from eossl.data.importers import IMPORTERS
from eossl.data.importers.bigearthnet import CLASSES_19, CLASSES_43
from eossl.data.store import SampleStore
from eossl.errors import ImportDataError
from tests.conftest import SHARED_DATA
from tests.data.bigearthnet.data import (
    PATCHES,
    band_values,
    s1_values,
    v2_names,
    write_bigearthnet_v1,
    write_bigearthnet_v2,
    write_split_files,
)

EXAMPLE = SHARED_DATA / "bigearthnet-example"


def _import(source, store, **options):
    importer = IMPORTERS["bigearthnet"]()
    return SampleStore(importer.write(source, store, importer.config(workers=0, **options)))


def _report(store):
    return json.loads((store.path / "import_report.json").read_text())


def _vector(names, classes):
    return np.isin(classes, names).astype(np.uint8)


@pytest.fixture(scope="module")
def v1_source(tmp_path_factory):
    """The fake v1.0 folder, written once per module; tests that change it work on a copy."""
    return write_bigearthnet_v1(tmp_path_factory.mktemp("ben") / "ben")


def _copy(source, tmp_path):
    return shutil.copytree(source, tmp_path / "ben")


def test_v1_pairs_s1_with_s2_maps_19_classes_and_keeps_the_official_split(tmp_path, v1_source):
    source = v1_source
    store = _import(source, tmp_path / "store")
    table = store.table.set_index("sample_key")
    # snow and cloud patches are excluded, the roads-and-airports patch has no 19-class label: filtered
    assert list(table.index) == [p.s2 for p in PATCHES[:5] if p.listed != "test" or p.labels_19]
    assert store.modalities["s2"].offset == 0 and store.modalities["s2"].product == "L2A"
    assert store.modalities["s1"].bands == ("VV", "VH") and store.modalities["s1"].units == "dB"
    target = store.target("labels")
    assert target.kind == "multi-label" and target.class_names == CLASSES_19
    assert store.split == "split" and dict(table["split"]) == {p.s2: p.listed for p in PATCHES if p.s2 in table.index}
    s2, s1, labels = store.read("s2"), store.read("s1"), store.read("labels")
    assert s2.shape == (4, 12, 12, 12) and s1.shape == (4, 2, 12, 12) and s2.dtype == np.uint16
    for row, key in enumerate(table.index):
        index = next(i for i, p in enumerate(PATCHES) if p.s2 == key)
        patch = PATCHES[index]
        np.testing.assert_array_equal(s2[row, 1], band_values(index, 1, (12, 12)))  # B02 at 10 m: as stored
        means = s2[row].reshape(12, -1).mean(axis=1)  # bands in preset order, 20/60 m bands resampled
        assert np.all((means >= 1000 * np.arange(1, 13)) & (means < 1000 * np.arange(1, 13) + 500))
        np.testing.assert_array_equal(s1[row], s1_values(index, 12))  # the S1 whose json names this S2 patch
        np.testing.assert_array_equal(labels[row], _vector(patch.labels_19, CLASSES_19))
        assert table.loc[key, "s1_patch"] == patch.s1 and table.loc[key, "tile"] == patch.tile
    assert table.loc[PATCHES[2].s2, "s1_time"] == "2017-06-14" and table.loc[PATCHES[2].s2, "time"] == "2017-06-13"
    with rasterio.open(source / "BigEarthNet-v1.0" / PATCHES[4].s2 / f"{PATCHES[4].s2}_B02.tif") as src:
        x, y = src.transform @ (6, 6)
        (lon,), (lat,) = transform(src.crs, "EPSG:4326", [x], [y])
    assert table.loc[PATCHES[4].s2, ["lat", "lon"]].tolist() == pytest.approx([lat, lon], abs=1e-6)
    assert 62 < lat < 63 and 24 < lon < 31  # UTM 35N, Finland
    assert 48 < table.loc[PATCHES[0].s2, "lat"] < 49 and 12 < table.loc[PATCHES[0].s2, "lon"] < 15
    report = _report(store)
    assert report["filtered"] == {"no label in the 19-class nomenclature": 1}
    assert any("seasonal snow" in n for n in report["notes"]) and any("cloud and shadow" in n for n in report["notes"])


def test_v1_43_classes_s2_only_without_split_files_or_exclusion(tmp_path, v1_source):
    source = _copy(v1_source, tmp_path)
    for split in ("train", "val", "test"):
        (source / f"{split}.csv").unlink()
    store = _import(source, tmp_path / "store", classes=43, exclude_snow_cloud=False, modalities=["s2"])
    assert len(store) == len(PATCHES) and store.split is None and "split" not in store.table
    assert set(store.modalities) == {"s2"} and "s1_patch" not in store.table
    assert store.target("labels").class_names == CLASSES_43
    expected = np.stack([_vector(p.labels, CLASSES_43) for p in PATCHES])
    np.testing.assert_array_equal(store.read("labels"), expected)
    assert list(store.table["time"]) == ["2017-06-13"] * 4 + ["2018-02-04"] * 3


def test_v1_s1_only_with_pair_split_files(tmp_path, v1_source):
    source = _copy(v1_source, tmp_path)
    write_split_files(source, pairs=True)
    store = _import(source, tmp_path / "s1", modalities="s1", classes=43)
    assert set(store.modalities) == {"s1"} and len(store) == 5  # the split lists, by the S1's S2 partner
    table = store.table
    assert list(table["sample_key"]) == sorted(p.s1 for p in PATCHES[:5])
    assert set(table["location_id"]) == {p.s2 for p in PATCHES[:5]} and set(table["split"]) == {"train", "val", "test"}
    assert table.set_index("sample_key").loc[PATCHES[2].s1, "time"] == "2017-06-14"
    row = list(table["sample_key"]).index(PATCHES[2].s1)
    np.testing.assert_array_equal(store.read("labels")[row], _vector(PATCHES[2].labels, CLASSES_43))
    np.testing.assert_array_equal(store.read("s1")[row], s1_values(2, 12))


def test_v2_layout_with_metadata_csv(tmp_path):
    source = write_bigearthnet_v2(tmp_path / "reben")
    store = _import(source, tmp_path / "store")
    table = store.table.set_index("sample_key")
    kept = [p for p in PATCHES if p.listed not in ("snow", "cloud")]
    assert list(table.index) == [v2_names(p)[0] for p in kept]
    assert dict(table["split"]) == {v2_names(p)[0]: p.listed for p in kept}  # "validation" -> val
    expected = np.stack([_vector(list(p.labels_19) or ["Urban fabric"], CLASSES_19) for p in kept])
    np.testing.assert_array_equal(store.read("labels"), expected)
    first = v2_names(PATCHES[0])[0]
    np.testing.assert_array_equal(store.read("s2")[0, 3], band_values(0, 3, (12, 12)))
    np.testing.assert_array_equal(store.read("s1")[2], s1_values(2, 12))
    assert table.loc[first, "tile"] == "33UUP" and table.loc[first, "time"] == "2017-06-13"
    assert table.loc[first, "country"] == "Austria" and 48 < table.loc[first, "lat"] < 49
    assert any("N9999" in n for n in _report(store)["notes"])
    with pytest.raises(ImportDataError, match="19-class"):
        _import(source, tmp_path / "s43", classes=43)


def test_v2_parquet_without_pyarrow_says_so(tmp_path):
    if importlib.util.find_spec("pyarrow") is not None:
        pytest.skip("pyarrow is installed: metadata.parquet is read")
    source = tmp_path / "reben"
    (source / "BigEarthNet-S2").mkdir(parents=True)
    (source / "metadata.parquet").write_bytes(b"PAR1")
    with pytest.raises(ImportDataError, match="pyarrow"):
        _import(source, tmp_path / "store")


def _break(source, case):
    first, second, third = PATCHES[:3]
    if case == "band":
        (source / "BigEarthNet-v1.0" / second.s2 / f"{second.s2}_B05.tif").unlink()
    elif case == "labels":
        path = source / "BigEarthNet-v1.0" / third.s2 / f"{third.s2}_labels_metadata.json"
        meta = json.loads(path.read_text())
        del meta["labels"]
        path.write_text(json.dumps(meta))
    else:  # an S1 patch whose S2 partner is not in the dataset
        orphan = source / "BigEarthNet-S1-v1.0" / "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_9_9"
        shutil.copytree(source / "BigEarthNet-S1-v1.0" / first.s1, orphan)
        meta = json.loads((orphan / f"{first.s1}_labels_metadata.json").read_text())
        (orphan / f"{orphan.name}_labels_metadata.json").write_text(
            json.dumps({**meta, "corresponding_s2_patch": "S2A_MSIL2A_20170613T101031_9_9"})
        )


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("band", r"_0_1'.*B05\.tif"),
        ("labels", r"_1_0_labels_metadata\.json': no 'labels'"),
        ("orphan", r"33UUP_9_9_labels_metadata\.json': corresponding_s2_patch 'S2A_MSIL2A_20170613T101031_9_9'"),
    ],
)
def test_v1_bad_patch_is_named(tmp_path, v1_source, case, message):
    source = _copy(v1_source, tmp_path)
    _break(source, case)
    with pytest.raises(ImportDataError, match=message):
        _import(source, tmp_path / "store")
    assert not (tmp_path / "store").exists()


def test_v1_bad_patches_are_skipped_and_counted(tmp_path, v1_source):
    source = _copy(v1_source, tmp_path)
    for case in ("band", "labels", "orphan"):
        _break(source, case)
    store = _import(source, tmp_path / "store", on_error="skip")
    assert list(store.table["sample_key"]) == [PATCHES[0].s2, PATCHES[4].s2]
    report = _report(store)
    assert report["skipped"] == 3 and report["filtered"] == {"no label in the 19-class nomenclature": 1}
    assert {item["key"] for item in report["skipped_items"]} == {
        PATCHES[1].s2,
        PATCHES[2].s2,
        "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_9_9",
    }


@pytest.mark.skipif(not EXAMPLE.is_dir(), reason=f"real BigEarthNet example patches not found at {EXAMPLE}")
def test_real_bigearthnet_example(tmp_path):
    store = _import(EXAMPLE, tmp_path / "store", classes=43)
    assert len(store) == 6
    s2, s1 = store.read("s2"), store.read("s1")
    assert s2.shape == (6, 12, 120, 120) and s2.dtype == np.uint16 and s1.shape == (6, 2, 120, 120)
    assert np.all(s1 < 20) and np.all(s1 > -60) and np.median(s1[:, 0]) > np.median(s1[:, 1])  # dB, VV above VH
    assert 0 < np.median(s2) < 10000
    table = store.table.set_index("sample_key")
    s2_root = next(EXAMPLE.glob("BigEarthNet-S2*"))
    for row, key in enumerate(table.index):
        meta = json.loads((s2_root / key / f"{key}_labels_metadata.json").read_text())
        np.testing.assert_array_equal(store.read("labels")[row], _vector(meta["labels"], CLASSES_43))
        central = {"33": 15, "29": -9, "35": 27}[table.loc[key, "tile"][:2]]  # UTM zone's central meridian
        assert abs(table.loc[key, "lon"] - central) < 4 and 35 < table.loc[key, "lat"] < 71
        assert table.loc[key, "time"] == meta["acquisition_date"][:10]
    assert table.loc["S2B_MSIL2A_20170924T93020_69_24", "s1_patch"].endswith("20170925T043256_35VPK_69_24")
