"""EnMAP importer on a fake L2A product and a fake SpectralEarth folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from eossl.data.importers import IMPORTERS
from eossl.data.importers.enmap import ENMAP_NOMINAL_NM, SPECTRALEARTH_BANDS
from eossl.data.store import SampleStore
from eossl.errors import ImportDataError
from tests.data.enmap.data import PRODUCT, WAVELENGTH_SHIFT, write_l2a_product, write_spectralearth


def _import(source, store, **options):
    importer = IMPORTERS["enmap"]()
    return importer.write(source, store, importer.config(workers=0, **options))


def test_l2a_product_patches_and_xml_wavelengths(tmp_path):
    product = write_l2a_product(tmp_path / "l2a")
    store = SampleStore(_import(tmp_path / "l2a", tmp_path / "store", patch_size=16))
    hsi = store.modalities["hsi"]
    assert hsi.num_bands == 224 and hsi.dtype == "int16" and hsi.nodata == -32768 and hsi.scale == 10000
    np.testing.assert_allclose(hsi.wavelengths_nm, np.array(ENMAP_NOMINAL_NM) + WAVELENGTH_SHIFT, atol=1e-3)
    assert len(store) == 3  # 2 x 2 patches of 16 in 40 pixels, the nodata corner filtered
    report = json.loads((tmp_path / "store" / "import_report.json").read_text())
    assert sum(report["filtered"].values()) == 1
    table = store.table.set_index("sample_key")
    key = f"{PRODUCT}/{PRODUCT}-SPECTRAL_IMAGE_r16_c0"
    with rasterio.open(product / f"{PRODUCT}-SPECTRAL_IMAGE.TIF") as f:
        expected = f.read(window=((16, 32), (0, 16)))
    np.testing.assert_array_equal(store.read("hsi", np.array([table.loc[key, "sample_id"]]))[0], expected)
    assert table.loc[key, "location_id"] == f"{PRODUCT}_r16_c0" and table.loc[key, "time"] == "2022-07-24"
    assert 44 < table.loc[key, "lat"] < 46 and 10 < table.loc[key, "lon"] < 16  # UTM 33N at 5,000 km
    assert store.dates is None


def test_spectralearth_202_bands_and_dates(tmp_path):
    source = write_spectralearth(tmp_path / "spectral_earth")
    store = SampleStore(_import(source, tmp_path / "store", patch_size=16))
    hsi = store.modalities["hsi"]
    assert hsi.num_bands == 202 and hsi.bands[125:127] == ("B126", "B142")
    assert hsi.wavelengths_nm == tuple(ENMAP_NOMINAL_NM[n - 1] for n in SPECTRALEARTH_BANDS)
    assert not any(1295 < w < 1519 or 1739 < w < 1968 for w in hsi.wavelengths_nm)  # water vapour removed
    table = store.table
    assert len(table) == 4 and store.dates.group == "location_id" and store.dates.time == "time"
    dated = table[table["location_id"] == 1001].sort_values("time")
    assert list(dated["time"]) == ["2022-11-03", "2023-05-12"]
    assert table.loc[table["location_id"] == 1003, "time"].isna().all()


def test_truncated_patch_and_bad_xml_are_named(tmp_path):
    source = write_spectralearth(tmp_path / "se")
    bad = source / "enmap" / "1002" / "ENMAP01-____L2A-DT0000006000_20220901T101500Z_004.tif"
    bad.write_bytes(bad.read_bytes()[:5000])
    with pytest.raises(ImportDataError, match=r"1002.*DT0000006000"):
        _import(source, tmp_path / "store", patch_size=16)
    store = SampleStore(_import(source, tmp_path / "store", patch_size=16, on_error="skip"))
    assert len(store) == 3 and (1002 not in set(store.table["location_id"]))
    assert '"skipped": 1' in (tmp_path / "store" / "import_report.json").read_text()
    product = write_l2a_product(tmp_path / "l2a", size=16, bands=224)
    xml = product / f"{PRODUCT}-METADATA.XML"
    xml.write_text(xml.read_text().replace("<wavelengthCenterOfBand>", "<wavelengthCenterOfBand>x", 1))
    with pytest.raises(ImportDataError, match=r"METADATA\.XML.*bandID 1"):
        _import(product, tmp_path / "store2", patch_size=16)
