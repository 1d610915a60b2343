"""hyperspectral-mat importer on fake .mat scenes: values, labels, the disjoint block split, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eossl.data.importers import IMPORTERS
from eossl.data.importers.hyperspectral_mat import SCENES
from eossl.data.store import SampleStore
from eossl.errors import ImportDataError
from tests.data.hyperspectral_mat.data import cube_values, ground_truth, write_scene, write_v73

SIZE, BLOCK = 24, 6


def _import(source, store, **options):
    importer = IMPORTERS["hyperspectral-mat"]()
    options = {"block_size": BLOCK, "patch_size": 3, **options}
    return importer.write(source, store, importer.config(workers=0, **options))


def test_patches_labels_and_values(tmp_path):
    source = write_scene(tmp_path / "ip", size=SIZE, bands=12, block=BLOCK)
    store = SampleStore(_import(source, tmp_path / "store"))
    hsi = store.modalities["hsi"]
    assert hsi.num_bands == 12 and hsi.dtype == "uint16" and hsi.wavelengths_nm is None  # 12 != 200 bands
    assert store.target("land_cover").class_names == SCENES["indian-pines"].classes
    assert store.target("land_cover_map").ignore_index == 255
    cube, gt = cube_values(SIZE, 12), ground_truth(SIZE, BLOCK)
    table = store.table
    assert set(table["land_cover"]) == {0, 1, 2, 3}
    np.testing.assert_array_equal(table["land_cover"], gt[table["row"], table["col"]] - 1)
    hsi_values = store.read("hsi")
    maps = store.read("land_cover_map")
    for i in range(len(table)):
        r, c = int(table["row"][i]), int(table["col"][i])
        np.testing.assert_array_equal(hsi_values[i, :, 1, 1], cube[r, c])  # centre pixel
        assert maps[i, 0, 1, 1] == gt[r, c] - 1
        if r == 0:  # reflect padding above the scene; its labels are ignored
            np.testing.assert_array_equal(hsi_values[i, :, 0, 1], cube[1, c])
            assert (maps[i, 0, 0] == 255).all()
    report = json.loads((tmp_path / "store" / "import_report.json").read_text())
    assert len(table) + sum(report["filtered"].values()) == int((gt > 0).sum())


def test_split_blocks_are_disjoint(tmp_path):
    source = write_scene(tmp_path / "ip", size=SIZE, bands=4, block=BLOCK)
    store = SampleStore(_import(source, tmp_path / "store", patch_size=5, seed=3))
    table = store.table
    assert store.split == "split" and set(table["split"]) == {"train", "val", "test"}
    block_split = {}
    for (bi, bj), split in zip(zip(table["row"] // BLOCK, table["col"] // BLOCK, strict=True), table["split"],
                               strict=True):  # fmt: skip
        assert block_split.setdefault((bi, bj), split) == split  # one split per block
        assert table.loc[(table["row"] // BLOCK == bi) & (table["col"] // BLOCK == bj), "location_id"].nunique() == 1
    test_pixels = {
        (r, c) for r in range(SIZE) for c in range(SIZE) if block_split.get((r // BLOCK, c // BLOCK)) == "test"
    }
    assert test_pixels
    for r, c in zip(
        table.loc[table["split"] == "train", "row"], table.loc[table["split"] == "train", "col"], strict=True
    ):
        window = {(i, j) for i in range(r - 2, r + 3) for j in range(c - 2, c + 3)}
        assert not window & test_pixels
    assert set(table.loc[table["split"] == "train", "land_cover"]) == {0, 1, 2, 3}  # every class in train


def test_max_per_class_and_full_band_wavelengths(tmp_path):
    source = write_scene(tmp_path / "pavia", scene="pavia-u", size=SIZE, bands=103, block=BLOCK)
    store = SampleStore(_import(source / "PaviaU.mat", tmp_path / "store", max_per_class=5))
    wavelengths = store.modalities["hsi"].wavelengths_nm
    assert len(wavelengths) == 103 and wavelengths[0] == 430.0 and wavelengths[-1] == 860.0
    assert store.target("land_cover").class_names[0] == "Asphalt"
    assert store.table.groupby(["split", "land_cover"]).size().max() <= 5


def test_refusals_name_the_file(tmp_path):
    v73 = write_v73(tmp_path / "v73" / "Indian_pines_corrected.mat")
    with pytest.raises(ImportDataError, match=r"Indian_pines_corrected\.mat.*v7\.3.*h5py"):
        _import(v73, tmp_path / "store")
    source = write_scene(tmp_path / "ip", size=SIZE, bands=4, block=BLOCK)
    from scipy.io import savemat

    savemat(source / "Indian_pines_gt.mat", {"indian_pines_gt": np.ones((SIZE, SIZE - 1), np.uint8)})
    with pytest.raises(ImportDataError, match=r"Indian_pines_gt\.mat.*24 x 23"):
        _import(source, tmp_path / "store")
    write_scene(source, size=SIZE, bands=4, block=BLOCK)
    cube = source / "Indian_pines_corrected.mat"
    cube.write_bytes(cube.read_bytes()[:1500])  # truncated: the header reads, the values do not
    with pytest.raises(ImportDataError, match=r"Indian_pines_corrected\.mat.*indian_pines_corrected"):
        _import(source, tmp_path / "store")
    with pytest.raises(ImportDataError, match=r"no sample left to write \(16 skipped"):
        _import(source, tmp_path / "store", on_error="skip")
    assert not (tmp_path / "store").exists()
