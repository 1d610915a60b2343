"""The crashes the importer fuzz tests found, each kept as a plain test: the input, and the documented
error that replaced the crash (a non-EosslError, a silently wrong store, or a message that did not name
the file)."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from eossl.data.importers._bigearthnet_files import day
from eossl.data.store import SampleStore
from eossl.errors import EosslError, ImportDataError, StoreError
from tests.data.bigearthnet.data import PATCHES
from tests.data.eurosat.data import ROOT
from tests.fuzz._damage import RasterDamage
from tests.fuzz._datasets import DATASETS, GEOTIFF_NAMES, Templates
from tests.fuzz._harness import check_import, fresh_copy, read_report, run_import

pytestmark = [
    pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> Templates:
    return Templates(tmp_path_factory.mktemp("fuzz-regressions"))


def _import(name, source, tmp_path, **options) -> EosslError | None:
    dataset = DATASETS[name]
    return run_import(dataset.kind, source, tmp_path / "store", {**dataset.options, **options})


@pytest.mark.parametrize(
    ("name", "rel"),
    [
        ("bigearthnet-v1", "train.csv"),  # was UnicodeDecodeError from the plan
        ("bigearthnet-v1", "patches_with_seasonal_snow.csv"),
        ("bigearthnet-v2", "metadata.csv"),
        ("eurosat", "eurosat-test.txt"),
        ("sen12ms", "test_list.txt"),
        ("geotiff-folder", "labels.csv"),
    ],
)
def test_a_list_or_table_that_is_not_utf8_is_named(name, rel, templates, tmp_path):
    source = fresh_copy(templates[name], tmp_path)
    (source / rel).write_bytes(b"\x9c\x0ev\xcb\xc4C\nT\xc5\x93")
    error = _import(name, source, tmp_path)
    assert isinstance(error, ImportDataError) and rel in str(error) and "not UTF-8" in str(error)


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"", "is empty"), (b'patch_id,labels\n"S2A_0_0,', "not a readable CSV"), (b"\xd2", "not UTF-8")],
)
def test_bigearthnet_v2_metadata_that_does_not_parse_is_named(content, expected, templates, tmp_path):
    """Was EmptyDataError, ParserError, UnicodeDecodeError from pandas."""
    source = fresh_copy(templates["bigearthnet-v2"], tmp_path)
    (source / "metadata.csv").write_bytes(content)
    error = _import("bigearthnet-v2", source, tmp_path)
    assert isinstance(error, ImportDataError) and "metadata.csv" in str(error) and expected in str(error)


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("patch_id", None, r"metadata\.csv' row 2: column 'patch_id' holds nan"),
        ("patch_id", "../../elsewhere", r"row 2: column 'patch_id' holds '\.\./\.\./elsewhere', not a plain"),
        ("s1_name", "", r"row 2: column 's1_name' holds nan"),
        ("labels", "['not a class']", r"metadata\.csv' row 2 \(patch .*unknown label 'not a class'"),
    ],
)
def test_bigearthnet_v2_rows_that_name_no_patch_are_named_by_row(column, value, expected, templates, tmp_path):
    """Was an error naming '<root>/nan/nan_B02.tif' (or a folder outside the dataset), not the table row."""
    source = fresh_copy(templates["bigearthnet-v2"], tmp_path)
    table = pd.read_csv(source / "metadata.csv")
    table.loc[1, column] = value
    table.to_csv(source / "metadata.csv", index=False)
    error = _import("bigearthnet-v2", source, tmp_path)
    assert isinstance(error, ImportDataError)
    assert re.search(expected, str(error)), str(error)
    check_import("bigearthnet", source, tmp_path / "both", {}, source / "metadata.csv")


def test_bigearthnet_v2_patch_listed_twice_is_named_and_skipped(templates, tmp_path):
    """Was "duplicate sample id" naming the band files, not the table."""
    source = fresh_copy(templates["bigearthnet-v2"], tmp_path)
    table = pd.read_csv(source / "metadata.csv")
    pd.concat([table, table.iloc[[1]]]).to_csv(source / "metadata.csv", index=False)
    raised, _ = check_import("bigearthnet", source, tmp_path, {}, source / "metadata.csv")
    assert "is listed twice (rows 2 and 4)" in str(raised)
    assert read_report(tmp_path / "skip")["skipped"] == 1 and len(SampleStore(tmp_path / "skip")) == 3


def test_bigearthnet_v1_json_date_that_is_no_date_is_named(templates, tmp_path):
    """``acquisition_date: 2017-13-45`` was a ValueError (month must be in 1..12) from ``date()``."""
    source = fresh_copy(templates["bigearthnet-v1"], tmp_path)
    path = source / "BigEarthNet-v1.0" / PATCHES[0].s2 / f"{PATCHES[0].s2}_labels_metadata.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "acquisition_date": "2017-13-45 10:10:31"}))
    error = _import("bigearthnet-v1", source, tmp_path)
    assert isinstance(error, ImportDataError) and f"{path.name}': 'acquisition_date' '2017-13-45" in str(error)
    assert day("S2A_MSIL2A_20171345T101031_0_0") == ""  # a patch name: no date, was ValueError in the plan


def test_eurosat_float_patch_is_refused_not_cast(templates, tmp_path):
    """A float32 patch with NaN was silently cast to uint16 (NaN -> 0) and stored."""
    source = fresh_copy(templates["eurosat"], tmp_path)
    path = source / ROOT / "Forest" / "Forest_1.tif"
    RasterDamage("rewrite", dtype="float32", fill="some-nan").apply(path)
    error = _import("eurosat", source, tmp_path)
    assert isinstance(error, ImportDataError) and "Forest_1.tif': expected uint16" in str(error)


def test_eurosat_split_files_listing_no_patch_are_named(templates, tmp_path):
    """Was "found nothing to import for 'eurosat' (check the layout)", naming no split file."""
    source = fresh_copy(templates["eurosat"], tmp_path)
    for split in ("train", "val", "test"):
        (source / f"eurosat-{split}.txt").write_text("nothing.jpg\n")
    error = _import("eurosat", source, tmp_path)
    assert isinstance(error, ImportDataError) and "eurosat-train.txt" in str(error) and "list none" in str(error)


def test_sen12ms_lists_without_train_are_named(templates, tmp_path):
    """Was "the split files put no patch of this folder in train", naming no file."""
    source = fresh_copy(templates["sen12ms"], tmp_path)
    (source / "train_list.txt").write_text("")
    error = _import("sen12ms", source, tmp_path)
    assert isinstance(error, ImportDataError) and "test_list.txt' put none of its 1 patches in train" in str(error)


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        (["inf", "1", "0"], "holds numbers that are not class ids"),  # was OverflowError from int(inf)
        (["1e12", "1", "0"], "class id 1000000000000 in column 'y' (ids above 65535 need class_names=)"),  # hung
    ],
)
def test_geotiff_folder_label_ids_that_are_no_ids(cells, expected, templates, tmp_path):
    source = fresh_copy(templates["geotiff-folder"], tmp_path)
    table = pd.read_csv(source / "labels.csv")
    table["y"] = cells
    table.to_csv(source / "labels.csv", index=False)
    error = _import("geotiff-folder", source, tmp_path)
    assert isinstance(error, ImportDataError) and "labels.csv" in str(error) and expected in str(error)


def test_geotiff_folder_split_values_are_checked_against_the_csv(templates, tmp_path):
    """A split 'foo' was a StoreError at publishing naming the store; a dropped split column was "no
    readable image among 3 samples"."""
    source = fresh_copy(templates["geotiff-folder"], tmp_path)
    table = pd.read_csv(source / "labels.csv")
    table.loc[2, "split"] = "foo"
    table.to_csv(source / "labels.csv", index=False)
    raised, skipped = check_import(
        "geotiff-folder", source, tmp_path, DATASETS["geotiff-folder"].options, source / "labels.csv"
    )
    assert "split column 'split' of" in str(raised) and "holds 'foo', expected one of train, val, test" in str(raised)
    assert skipped is None and len(SampleStore(tmp_path / "skip")) == 2
    table.drop(columns=["split"]).to_csv(source / "labels.csv", index=False)
    error = _import("geotiff-folder", source, tmp_path / "dropped")
    assert isinstance(error, ImportDataError)
    assert "split_column 'split': no sample has a value in that column of 'labels.csv' or 'meta.csv'" in str(error)


def test_geotiff_folder_complex_pixels_are_refused(templates, tmp_path):
    """complex64 pixels were stored as uint16, the imaginary part dropped."""
    source = fresh_copy(templates["geotiff-folder"], tmp_path)
    RasterDamage("rewrite", dtype="complex64", fill="typical").apply(source / "images" / "b.tif")
    error = _import("geotiff-folder", source, tmp_path)
    assert isinstance(error, ImportDataError) and "b.tif': complex pixels (complex64)" in str(error)


def test_ssl4eo_integer_s1_band_beside_a_float_one_is_refused(templates, tmp_path):
    """An int32 VH beside a float32 VV was upcast with it to float64 and accepted."""
    source = fresh_copy(templates["ssl4eo-s12"], tmp_path)
    path = next((source / "s1").rglob("VH.tif"))
    RasterDamage("rewrite", dtype="int32", fill="small").apply(path)
    error = _import("ssl4eo-s12", source, tmp_path)
    assert isinstance(error, ImportDataError) and "VH.tif': expected float backscatter" in str(error)


def test_a_store_left_without_train_after_skips_names_what_was_skipped(templates, tmp_path):
    """Skipping the only train sample made publishing fail with "no 'train' rows", naming no file."""
    source = fresh_copy(templates["geotiff-folder"], tmp_path)
    table = pd.read_csv(source / "labels.csv")
    table["split"] = ["train", "test", "test"]
    table.to_csv(source / "labels.csv", index=False)
    (source / "images" / f"{GEOTIFF_NAMES[0]}.tif").write_bytes(b"II*\x00")
    error = _import("geotiff-folder", source, tmp_path, on_error="skip")
    assert isinstance(error, StoreError) and "no 'train' rows; after 1 skipped items" in str(error)
    assert f"{GEOTIFF_NAMES[0]}.tif" in str(error)


def test_bigearthnet_v2_patch_name_too_long_for_the_file_system(templates, tmp_path):
    """A 300-character patch_id was an OSError (File name too long) from the pipeline's file sizes."""
    source = fresh_copy(templates["bigearthnet-v2"], tmp_path)
    table = pd.read_csv(source / "metadata.csv")
    table.loc[0, "patch_id"] = "x" * 300
    table.to_csv(source / "metadata.csv", index=False)
    raised, _ = check_import("bigearthnet", source, tmp_path, {}, source / "metadata.csv")
    assert "row 1: column 'patch_id' holds 'xxx" in str(raised)


def test_bigearthnet_v2_metadata_with_no_rows_is_named(templates, tmp_path):
    """A table cut after its header was "found nothing to import (check the layout)", naming no file."""
    source = fresh_copy(templates["bigearthnet-v2"], tmp_path)
    header = (source / "metadata.csv").read_text().splitlines()[0]
    (source / "metadata.csv").write_text(header + "\n")
    error = _import("bigearthnet-v2", source, tmp_path)
    assert isinstance(error, ImportDataError) and "metadata.csv': lists no patch to import" in str(error)


def test_a_first_sample_of_another_size_is_named_where_a_later_one_differs(templates, tmp_path):
    """The first sample sets the array shapes; a damaged first sample made the error blame the next,
    intact one alone."""
    source = fresh_copy(templates["eurosat"], tmp_path)
    first = source / ROOT / "AnnualCrop" / "AnnualCrop_1.tif"
    RasterDamage("rewrite", shape=(5, 7), fill="typical").apply(first)
    raised, skipped = check_import("eurosat", source, tmp_path, {}, first)
    assert "Forest_1': array 's2' has shape (13, 8, 8), expected (13, 5, 7) as sample 'AnnualCrop_1'" in str(raised)
    assert skipped is None and read_report(tmp_path / "skip")["skipped"] == 2


def test_bands_are_resampled_onto_the_band_grid_with_most_pixels(templates, tmp_path):
    """A 60 m band of 13 x 1 px beside 12 x 12 px bands set the grid (13 x 1: the larger height won)."""
    source = fresh_copy(templates["geotiff-folder-bands"], tmp_path)
    RasterDamage("rewrite", shape=(13, 1), fill="typical").apply(source / "s1" / "s1_B01.tif")
    assert _import("geotiff-folder-bands", source, tmp_path) is None
    assert SampleStore(tmp_path / "store").read("s2").shape == (2, 12, 12, 12)


def test_a_crs_tag_that_is_not_utf8_is_named(templates, tmp_path):
    """Two bytes of a GeoTIFF's GeoASCIIParams flipped: rasterio.open raised UnicodeDecodeError (its CRS)."""
    source = fresh_copy(templates["ssl4eo-s12"], tmp_path)
    path = next((source / "s1").rglob("VH.tif"))
    RasterDamage("flip", flips=((0.625, 0), (0.6875, 128))).apply(path)
    raised, _ = check_import("ssl4eo-s12", source, tmp_path, DATASETS["ssl4eo-s12"].options, path)
    assert "VH.tif': not a readable raster ('utf-8' codec can't decode" in str(raised)


def test_bigearthnet_v1_split_files_leaving_out_every_patch_are_named(templates, tmp_path):
    """An emptied train.csv (the patches' only split) was "found nothing to import (check the layout)"."""
    source = fresh_copy(templates["bigearthnet-v1"], tmp_path)
    (source / "train.csv").write_text("")
    error = _import("bigearthnet-v1", source, tmp_path)
    assert isinstance(error, ImportDataError)
    assert "every patch is left out by train.csv, val.csv, test.csv" in str(error)
    assert "(2 not in the split files)" in str(error)
