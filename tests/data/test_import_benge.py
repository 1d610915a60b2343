"""ben-ge importer on fake ben-ge releases (GeoTIFF and .npy) in the real layout."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from eossl.data.importers import IMPORTERS
from eossl.data.importers.benge import CLIMATE_ZONES, WORLDCOVER_CLASSES
from eossl.data.metadata import metadata_encoding
from eossl.data.store import SampleStore
from eossl.errors import ImportDataError
from tests.conftest import SHARED_DATA
from tests.data.benge.data import PATCHES, dem_values, fractions, s1_values, s2_values, worldcover_codes, write_benge


def _import(source, store, **options):
    importer = IMPORTERS["ben-ge"]()
    return importer.write(source, store, importer.config(workers=0, **options))


def test_geotiff_release(tmp_path):
    source = write_benge(tmp_path / "ben-ge-800")
    store = SampleStore(_import(source, tmp_path / "store"))
    assert len(store) == 4 and set(store.modalities) == {"s2", "s1", "dem"} and store.split is None
    assert store.modalities["s2"].product == "L2A" and store.modalities["dem"].dtype == "int16"
    table = store.table.set_index("sample_key")
    s2_id, s1_id, zone = PATCHES[1]
    row = int(table.loc[s2_id, "sample_id"])
    s2 = store.read("s2", np.array([row]))[0]
    np.testing.assert_array_equal(s2[[1, 2, 3, 7]], s2_values(1)[[1, 2, 3, 7]])  # the 10 m bands as they are
    with rasterio.open(source / "sentinel-2" / s2_id / f"{s2_id}_B05.tif") as f:
        assert f.shape == (6, 6) and s2.shape == (12, 12, 12)  # 20 m bands on the 10 m grid
    np.testing.assert_allclose(store.read("s1", np.array([row]))[0], s1_values(1))
    np.testing.assert_array_equal(store.read("dem", np.array([row]))[0], dem_values(1))
    wc = store.read("worldcover", np.array([row]))[0, 0]
    assert wc[0, 0] == 255 and wc[5, 0] == 1 and wc[5, 11] == 10  # codes 20 -> 1, 100 -> 10, no data ignored
    assert store.target("worldcover").class_names == WORLDCOVER_CLASSES
    np.testing.assert_allclose(store.read("worldcover_fractions", np.array([row]))[0], fractions(1), atol=1e-6)
    assert table.loc[s2_id, "worldcover_majority"] == int(np.argmax(fractions(1)))
    assert (
        store.read("worldcover_multilabel", np.array([row]))[0].tolist() == (fractions(1) >= 0.05).astype(int).tolist()
    )
    first = int(table.loc[PATCHES[0][0], "sample_id"])
    assert store.read("worldcover", np.array([first]))[0, 0, 5, 11] == 9  # code 95 (mangroves) -> 9
    assert table.loc[s2_id, "climate_zone"] == zone and store.target("climate_zone").class_names == CLIMATE_ZONES
    assert table.loc[s2_id, "location_id"] == s2_id and table.loc[s2_id, "time"] == "2018-02-04"
    assert table.loc[s2_id, "season"] == "DJF" and table.loc[s2_id, "temperature_s2"] == 281.0
    assert table.loc[s2_id, "lat"] == 49.0 and table.loc[s2_id, "patch_id_s1"] == s1_id
    planes, names = metadata_encoding(store.table, ["season", "temperature_s2", "wind-u_s2"])
    assert planes.shape == (4, 4) and names[:2] == ("season_sin", "season_cos")


def test_npy_release_with_official_split(tmp_path):
    source = write_benge(tmp_path / "ben-ge-8k", name="ben-ge-8k", npy=True, splits=True)
    (source / "ben-ge-8k_esaworldcover.csv").unlink()  # fractions then come from the maps
    store = SampleStore(_import(source, tmp_path / "store", modalities=["s2", "dem"]))
    assert set(store.modalities) == {"s2", "dem"} and store.split == "split"
    table = store.table.set_index("sample_key")
    assert list(table.loc[[p[0] for p in PATCHES], "split"]) == ["train", "train", "val", "test"]
    row = int(table.loc[PATCHES[2][0], "sample_id"])
    np.testing.assert_array_equal(store.read("s2", np.array([row]))[0], s2_values(2))
    assert table.loc[PATCHES[2][0], "climate_zone"] == PATCHES[2][2]
    codes = worldcover_codes(2)
    assert (store.read("worldcover", np.array([row]))[0, 0] == 255).sum() == (codes == 0).sum()
    np.testing.assert_allclose(store.read("worldcover_fractions", np.array([row]))[0], fractions(2), atol=1e-6)


def test_missing_band_and_bad_codes_are_named(tmp_path):
    source = write_benge(tmp_path / "ben-ge-800", count=2)
    s2_id = PATCHES[1][0]
    (source / "sentinel-2" / s2_id / f"{s2_id}_B8A.tif").unlink()
    with pytest.raises(ImportDataError, match=rf"{s2_id}_B8A\.tif.*does not exist"):
        _import(source, tmp_path / "store")
    store = SampleStore(_import(source, tmp_path / "store", on_error="skip"))
    assert len(store) == 1 and s2_id not in set(store.table["sample_key"])
    assert '"skipped": 1' in (tmp_path / "store" / "import_report.json").read_text()
    path = source / "esaworldcover" / f"{PATCHES[0][0]}_esaworldcover.tif"
    with rasterio.open(path, "r+") as f:
        f.write(np.full((1, 12, 12), 33, np.uint8))
    with pytest.raises(ImportDataError, match=r"_esaworldcover\.tif.*WorldCover codes \[33\]"):
        _import(source, tmp_path / "store2")


BIGEARTHNET = SHARED_DATA / "bigearthnet-example"


@pytest.mark.skipif(not BIGEARTHNET.is_dir(), reason=f"real BigEarthNet samples not found at {BIGEARTHNET}")
def test_real_bigearthnet_patches_as_ben_ge(tmp_path):
    """ben-ge's Sentinel-1/2 are BigEarthNet's own folders: the real patches, with a meta table made here."""
    import json

    import pandas as pd
    from rasterio.warp import transform

    source = tmp_path / "ben-ge"
    source.mkdir()
    (source / "sentinel-2").symlink_to(BIGEARTHNET / "BigEarthNet-S2-Example")
    (source / "sentinel-1").symlink_to(BIGEARTHNET / "BigEarthNet-S1-Example")
    rows = []
    for folder in sorted((BIGEARTHNET / "BigEarthNet-S1-Example").iterdir()):
        info = json.loads(next(folder.glob("*_labels_metadata.json")).read_text())
        s2 = json.loads(next((source / "sentinel-2" / info["corresponding_s2_patch"]).glob("*.json")).read_text())
        box = s2["coordinates"]
        crs = rasterio.open(next((source / "sentinel-2" / info["corresponding_s2_patch"]).glob("*_B02.tif"))).crs
        lon, lat = transform(crs, "EPSG:4326", [(box["ulx"] + box["lrx"]) / 2], [(box["uly"] + box["lry"]) / 2])
        rows.append({"patch_id": info["corresponding_s2_patch"], "patch_id_s1": folder.name,
                     "timestamp_s2": s2["acquisition_date"], "lon": lon[0], "lat": lat[0]})  # fmt: skip
    pd.DataFrame(rows).to_csv(source / "ben-ge-real_meta.csv", index=False)
    store = SampleStore(_import(source, tmp_path / "store"))
    assert len(store) == len(rows) == 6 and set(store.modalities) == {"s2", "s1"} and not store.targets
    s2, s1 = store.read("s2"), store.read("s1")
    assert s2.shape == (6, 12, 120, 120) and s2.dtype == np.uint16 and s1.shape == (6, 2, 120, 120)
    first = rows[0]["patch_id"]
    with rasterio.open(source / "sentinel-2" / first / f"{first}_B02.tif") as f:
        row = int(store.table.set_index("sample_key").loc[first, "sample_id"])
        np.testing.assert_array_equal(s2[row, 1], f.read(1))
    assert 50 < np.median(s2[:, 1]) < 3000 and -40 < np.median(s1[:, 0]) < 5  # reflectance x 10000; VV in dB
    assert store.table["time"].str.match(r"201[78]-\d\d-\d\d").all() and store.table["lat"].between(35, 70).all()
