"""geotiff-folder importer: file-per-sample and file-per-band folders, labels, masks, metadata, tiles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eossl.data.importers import IMPORTERS
from eossl.data.importers.pipeline import read_report
from eossl.data.importers.raster import centre_lonlat, write_geotiff
from eossl.data.store import SampleStore
from eossl.errors import ImportDataError
from tests.conftest import SHARED_DATA
from tests.data.geotiff_folder.data import (
    ORIGIN,
    band_values,
    sample_values,
    write_csv,
    write_per_band,
    write_per_sample,
    write_tile,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),  # rasterio's own Affine use
]
BEN_NAMES = ["S2A_MSIL2A_20170613T101031_0_45", "S2B_MSIL2A_20180502T93029_2_3"]


def _importer():
    return IMPORTERS["geotiff-folder"]()


def _import(source, store, **options) -> SampleStore:
    importer = _importer()
    return SampleStore(importer.write(source, store, importer.config(workers=0, **options)))


def _plan(source, **options):
    importer = _importer()
    return importer.plan(source, importer.config(workers=0, **options))


def _rows(store: SampleStore) -> pd.DataFrame:
    return store.table.set_index("sample_key")


def test_file_per_sample_unlabelled_keeps_pixels_bands_place_and_date(tmp_path):
    written = write_per_sample(tmp_path / "src", ["scene_20210615_a", "scene_2021-07-01_b", "c"])
    store = _import(tmp_path / "src", tmp_path / "store")
    s2 = store.modalities["s2"]
    assert len(store) == 3 and s2.num_bands == 12 and s2.bands[0] == "B1" and s2.product == "L2A"
    assert s2.offset == 0 and not store.targets
    rows = _rows(store)
    for key, values in written.items():
        np.testing.assert_array_equal(store.read("s2", np.array([rows.loc[key, "sample_id"]]))[0], values)
        assert rows.loc[key, "location_id"] == key
    lat, lon = centre_lonlat(tmp_path / "src/images/c.tif")
    assert rows.loc["c", "lat"] == pytest.approx(lat) and rows.loc["c", "lon"] == pytest.approx(lon)
    assert (
        rows.loc["scene_20210615_a", "time"] == "2021-06-15" and rows.loc["scene_2021-07-01_b", "time"] == "2021-07-01"
    )
    assert pd.isna(rows.loc["c", "time"])
    assert any("offset 0" in n for n in read_report(store.path)["notes"])


def test_sentinel2_offset_from_dates_must_agree_or_be_set(tmp_path):
    write_per_sample(tmp_path / "new", ["a_20230101", "b_20230301"])
    plan = _plan(tmp_path / "new")
    assert plan.modalities["s2"].offset == -1000 and any("2023-01-01" in n for n in plan.notes)
    write_per_sample(tmp_path / "mixed", ["a_20230101", "b_20210301"])
    with pytest.raises(ImportDataError, match=r"mixed Sentinel-2 processing baselines.*offset="):
        _plan(tmp_path / "mixed")
    assert _plan(tmp_path / "mixed", offset=0).modalities["s2"].offset == 0


def test_file_per_band_resamples_20m_and_60m_bands_onto_the_10m_grid(tmp_path):
    write_per_band(tmp_path / "src", BEN_NAMES)
    store = _import(tmp_path / "src", tmp_path / "store")
    assert read_report(store.path)["options"]["layout"] == "auto" and store.group.attrs["layout"] == "file-per-band"
    rows = _rows(store)
    assert list(rows.index) == BEN_NAMES and list(rows["time"]) == ["2017-06-13", "2018-05-02"]
    for s, name in enumerate(BEN_NAMES):
        x = store.read("s2", np.array([rows.loc[name, "sample_id"]]))[0].astype(float)
        assert x.shape == (12, 12, 12)
        np.testing.assert_array_equal(x[1], band_values(1, s))  # B02 (10 m) as written
        # B05 (20 m, a ramp of 10 per 20 m pixel) upsampled bilinearly: 5 per 10 m pixel inside the tile
        expected = 1000 + 100 * 4 + 10 * s + 10 * ((np.arange(1, 11) + 0.5) / 2 - 0.5)
        np.testing.assert_allclose(x[4][:, 1:11], np.broadcast_to(expected, (12, 10)), atol=1)
        # B1 (60 m) is not B11 or B12: each band keeps its own level
        assert 1000 + 10 * s <= x[0].min() and x[0].max() <= 1010 + 10 * s
        assert x[10].min() >= 1000 + 100 * 10 + 10 * s and x[11].min() >= 1000 + 100 * 11 + 10 * s
    write_per_band(tmp_path / "flat", ["p1", "p2"], subfolders=False)
    plan = _plan(tmp_path / "flat")
    assert [i.key for i in plan.items] == ["p1", "p2"] and all(len(i.files) == 12 for i in plan.items)


def test_missing_band_file_is_named_or_skipped(tmp_path):
    write_per_band(tmp_path / "src", ["a", "b"], skip={("b", "B05")})
    with pytest.raises(ImportDataError, match=r"sample 'b'.*band B5"):
        _import(tmp_path / "src", tmp_path / "store")
    store = _import(tmp_path / "src", tmp_path / "store", on_error="skip")
    report = read_report(store.path)
    assert len(store) == 1 and report["skipped"] == 1 and "B5" in report["skipped_items"][0]["reason"]


def test_single_label_csv_metadata_and_split(tmp_path):
    names = ["n1", "n2", "n3", "n4"]
    write_per_sample(tmp_path / "src", names)
    classes = ["water", "forest", "crop", "forest"]
    splits = ["train", "train", "val", "test"]
    write_csv(
        tmp_path / "src/labels.csv",
        [{"fn": f"{n}.tif", "landcover": c, "split": s} for n, c, s in zip(names, classes, splits, strict=True)],
    )
    meta = [{"fn": "n1.tif", "lat": 10.5, "lon": 20.5, "time": "2020-05-01", "location_id": "farm"}]
    meta.append({"fn": "n2.tif", "lat": 11.0, "lon": 21.0, "time": "2020-05-02T10:30:00", "location_id": "farm"})
    write_csv(tmp_path / "src/meta.csv", meta)
    options = {"labels": "labels.csv", "label_column": "landcover", "metadata": "meta.csv", "split_column": "split"}
    store = _import(tmp_path / "src", tmp_path / "store", **options)
    target = store.target("label")
    assert target.kind == "single-label" and target.class_names == ("crop", "forest", "water")
    rows = _rows(store)
    assert [target.class_names[i] for i in rows.loc[names, "label"]] == classes
    assert list(rows.loc[names, "split"]) == splits and store.split == "split"
    assert rows.loc["n1", "lat"] == 10.5 and rows.loc["n2", "time"] == "2020-05-02"
    assert list(rows.loc[names, "location_id"]) == ["farm", "farm", "n3", "n4"]
    assert rows.loc["n3", "lat"] == pytest.approx(centre_lonlat(tmp_path / "src/images/n3.tif")[0])
    write_csv(tmp_path / "src/ids.csv", [{"id": f"images/{n}", "cls": i % 2} for i, n in enumerate(names)])
    plan = _plan(tmp_path / "src", labels="ids.csv", label_column="cls", class_names=["no", "yes"])
    assert plan.targets[0].class_names == ("no", "yes") and [i.info["row"]["label"] for i in plan.items] == [0, 1, 0, 1]


def test_labels_csv_missing_an_id_is_listed_or_skipped(tmp_path):
    write_per_sample(tmp_path / "src", ["n1", "n2", "n3"])
    write_csv(tmp_path / "labels.csv", [{"file": "n1", "y": "a"}, {"file": "n3", "y": "b"}])
    options = {"labels": str(tmp_path / "labels.csv"), "label_column": "y"}
    with pytest.raises(ImportDataError, match=r"1 of 3 samples.*'n2'.*labels\.csv"):
        _import(tmp_path / "src", tmp_path / "store", **options)
    store = _import(tmp_path / "src", tmp_path / "store", on_error="skip", **options)
    assert list(store.table["sample_key"]) == ["n1", "n3"] and read_report(store.path)["skipped"] == 1


def test_multi_label_csv_as_names_or_01_columns(tmp_path):
    write_per_sample(tmp_path / "src", ["n1", "n2", "n3"])
    tags = [{"fn": "n1.tif", "tags": "water; forest"}, {"fn": "n2.tif", "tags": "crop|water"}, {"fn": "n3.tif"}]
    write_csv(tmp_path / "src/tags.csv", tags)
    store = _import(tmp_path / "src", tmp_path / "store", labels="tags.csv", multi_label="tags")
    target = store.target("labels")
    assert target.kind == "multi-label" and target.class_names == ("crop", "forest", "water")
    np.testing.assert_array_equal(store.read("labels"), [[0, 1, 1], [1, 0, 1], [0, 0, 0]])
    write_csv(tmp_path / "src/cols.csv", [{"fn": f"n{i}.tif", "urban": i % 2, "rural": 1} for i in (1, 2, 3)])
    plan = _plan(tmp_path / "src", labels="cols.csv", label_columns=["urban", "rural"])
    assert plan.targets[0].class_names == ("urban", "rural") and plan.extra_arrays["labels"] == ((2,), "uint8")
    assert [i.info["labels"] for i in plan.items] == [[1, 1], [0, 1], [1, 1]]


def test_tile_cut_into_patches_with_masks_nodata_filtered_and_block_places(tmp_path):
    values, mask = write_tile(tmp_path / "src", "big", 32, 48, nodata_corner=12)
    options = {"patch_size": 8, "split_block": 16, "masks": "{stem}_mask.tif", "mask_classes": ["a", "b", "c"]}
    store = _import(tmp_path / "src", tmp_path / "store", **options)
    report = read_report(store.path)
    # 4 x 6 patches; the top-left one is all nodata, its neighbours exactly half (kept: not above 0.5)
    assert report["items"] == 1 and len(store) == 23 and sum(report["filtered"].values()) == 1
    rows = _rows(store)
    assert "big_r0_c0" not in rows.index and "big_r0_c8" in rows.index
    row = rows.loc["big_r8_c16"]
    np.testing.assert_array_equal(store.read("s2", np.array([row["sample_id"]]))[0], values[:, 8:16, 16:24])
    np.testing.assert_array_equal(store.read("mask", np.array([row["sample_id"]]))[0, 0], mask[8:16, 16:24])
    assert store.target("mask").kind == "segmentation" and store.target("mask").class_names == ("a", "b", "c")
    assert row["location_id"] == "big_b0_1" and rows.loc["big_r24_c40", "location_id"] == "big_b1_2"
    assert rows["location_id"].nunique() == 6 and set(rows["tile"]) == {"big"}
    assert rows.loc["big_r0_c8", "lat"] > rows.loc["big_r24_c8", "lat"]  # patch centres, north up
    assert "mask" not in " ".join(rows["source_path"])  # the mask raster is not an image


def test_yaml_sensor_float_values_and_nan_kept(tmp_path):
    source = tmp_path / "src"
    (source).mkdir()
    (source / "drone.yaml").write_text(
        "kind: optical\ndtype: float32\nunits: reflectance\nbands:\n"
        "  - {name: red, wavelength_nm: 650, gsd_m: 0.1}\n  - {name: green, wavelength_nm: 560, gsd_m: 0.1}\n"
        "  - {name: nir, wavelength_nm: 840, gsd_m: 0.1}\n"
    )
    values = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    values[:, :2, :2] = np.nan
    write_geotiff(source / "flight1.tif", values, crs=None)
    store = _import(source, tmp_path / "store", sensor="drone.yaml", modality="uav")
    uav = store.modalities["uav"]
    assert uav.bands == ("red", "green", "nir") and uav.wavelengths_nm == (650.0, 560.0, 840.0) and uav.offset == 0
    np.testing.assert_array_equal(store.read("uav")[0], values)
    assert np.isnan(store.table.loc[0, "lat"]) and any("no CRS" in n for n in read_report(store.path)["notes"])


def test_band_count_and_crs_are_checked_per_file(tmp_path):
    write_geotiff(tmp_path / "src/ok.tif", sample_values(0, size=8), crs=None)
    write_geotiff(tmp_path / "src/rgb.tif", sample_values(1, size=8, bands=3), crs="EPSG:32633")
    importer = _importer()
    options = importer.config(workers=0, layout="file-per-sample")
    ok, rgb = importer.plan(tmp_path / "src", options).items
    with pytest.raises(ImportDataError, match=r"rgb\.tif': 3 bands, expected 12 \(B1, B2"):
        importer.read(rgb, options)
    strict = importer.config(workers=0, layout="file-per-sample", require_crs=True)
    with pytest.raises(ImportDataError, match=r"ok\.tif': raster has no CRS"):
        importer.read(ok, strict)


def test_mismatched_size_and_corrupt_file_are_named_or_skipped(tmp_path):
    source = tmp_path / "src"
    write_per_sample(source, ["a", "d"])
    write_geotiff(source / "images/b.tif", sample_values(5, size=20), crs="EPSG:32633", origin=ORIGIN)
    write_geotiff(source / "images/c.tif", sample_values(6), crs="EPSG:32633", origin=ORIGIN)
    (source / "images/c.tif").write_bytes((source / "images/c.tif").read_bytes()[:400])
    with pytest.raises(ImportDataError, match=r"b\.tif'.*20x20.*a\.tif' has 16x16"):
        _import(source, tmp_path / "store")
    store = _import(source, tmp_path / "store", on_error="skip")
    report = read_report(store.path)
    assert list(store.table["sample_key"]) == ["a", "d"] and report["skipped"] == 2
    assert "c.tif" in report["skipped_items"][1]["reason"]


def test_ssl4eo_s12_example_with_index_csv():
    source = SHARED_DATA / "ssl4eo-s12-example"
    if not (source / "index.csv").is_file():
        pytest.skip(f"real SSL4EO-S12 samples not found at {source}")
    index = pd.read_csv(source / "index.csv").set_index("fn")
    plan = _plan(source, metadata="index.csv")
    assert len(plan.items) == len(index) == 20 and plan.capacity is None
    lat = [i.info["row"]["lat"] for i in plan.items]
    np.testing.assert_allclose(lat, [index.loc[f"{i.key}.tif", "lat"] for i in plan.items])


def test_ssl4eo_s12_example_tiled(tmp_path):
    source = SHARED_DATA / "ssl4eo-s12-example"
    if not (source / "index.csv").is_file():
        pytest.skip(f"real SSL4EO-S12 samples not found at {source}")
    index = pd.read_csv(source / "index.csv").set_index("fn")
    options = {"sensor": "s2-l2a", "metadata": "index.csv", "patch_size": 128, "pattern": "images/patch_25*.tif"}
    store = _import(source, tmp_path / "store", **options)  # two of the 20 files: the writer's statistics are slow
    assert (
        store.modalities["s2"].num_bands == 12 and len(store) + sum(read_report(store.path)["filtered"].values()) == 8
    )
    rows = store.table
    assert rows["location_id"].nunique() == 2 and set(rows["tile"]) == {"patch_252161", "patch_25630"}
    expected = index.loc[rows["tile"] + ".tif"]
    np.testing.assert_allclose(rows["lat"], expected["lat"], atol=0.02)  # patch centres, 640 m from the file's
    np.testing.assert_allclose(rows["lon"], expected["lon"], atol=0.05)
    assert set(rows["url"]) == set(expected["url"])
    sample = store.read("s2", np.arange(len(store)))
    assert sample.dtype == np.uint16 and 0 < np.median(sample) < 10000  # surface reflectance x 10000


def test_bigearthnet_example_as_band_files():
    source = SHARED_DATA / "bigearthnet-example" / "BigEarthNet-S2-Example"
    if not source.is_dir():
        pytest.skip(f"real BigEarthNet samples not found at {source}")
    importer = _importer()
    options = importer.config(workers=0)
    plan = importer.plan(source, options)
    assert len(plan.items) == 6 and all(len(i.files) == 12 for i in plan.items)
    assert all(i.info["time"].startswith(("2017", "2018")) for i in plan.items)
    (sample,) = importer.read(plan.items[0], options)
    values = sample.arrays["s2"]
    assert values.shape == (12, 120, 120) and values.dtype == np.uint16 and 0 < np.median(values) < 10000


def test_cli_overrides_keep_patterns_as_strings():
    from eossl.config import parse_overrides

    given = parse_overrides(["masks={stem}_mask.tif", "pattern=**/*.tif", "patch_size=64", "offset=-1000"])
    options = _importer().config.model_validate(given)
    assert options.masks == "{stem}_mask.tif" and options.pattern == "**/*.tif" and options.offset == -1000
