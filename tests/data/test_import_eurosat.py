"""EuroSAT importer on a fake EuroSAT MS folder in the real layout."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from eossl.data.importers import IMPORTERS
from eossl.data.store import SampleStore
from eossl.errors import ImportDataError
from tests.data.eurosat.data import CLASSES, ROOT, write_eurosat


def _import(source, store, **options):
    importer = IMPORTERS["eurosat"]()
    return importer.write(source, store, importer.config(workers=0, **options))


def test_eurosat_store_holds_bands_labels_and_official_split(tmp_path):
    source = write_eurosat(tmp_path / "EuroSAT", per_class=3)
    store = SampleStore(_import(source, tmp_path / "store"))
    assert len(store) == 30
    assert store.modalities["s2"].num_bands == 13 and store.modalities["s2"].product == "L1C"
    target = store.target("land_use")
    assert target.kind == "single-label" and target.class_names == CLASSES
    table = store.table.set_index("sample_key")
    with rasterio.open(source / ROOT / "Forest" / "Forest_2.tif") as f:
        expected = f.read()
    row = int(table.loc["Forest_2", "sample_id"])
    np.testing.assert_array_equal(store.read("s2", np.array([row]))[0], expected)
    assert table.loc["Forest_2", "land_use"] == CLASSES.index("Forest")
    assert store.split == "split"
    assert (table["split"] == "val").sum() == 10 and (table["split"] == "test").sum() == 10
    assert 45 < table["lat"].mean() < 48  # UTM 32N near 5,200 km northing
    stats = store.stats["s2"]
    assert len(stats["p2"]) == 13 and all(lo < hi for lo, hi in zip(stats["p2"], stats["p98"], strict=True))


def test_eurosat_truncated_file_is_named_or_skipped(tmp_path):
    source = write_eurosat(tmp_path / "EuroSAT", per_class=2)
    bad = source / ROOT / "River" / "River_1.tif"
    bad.write_bytes(bad.read_bytes()[:300])
    with pytest.raises(ImportDataError, match=r"River_1\.tif"):
        _import(source, tmp_path / "store")
    assert not (tmp_path / "store").exists()
    store = SampleStore(_import(source, tmp_path / "store", on_error="skip"))
    assert len(store) == 19 and "River_1" not in set(store.table["sample_key"])
    report = (tmp_path / "store" / "import_report.json").read_text()
    assert "River_1.tif" in report and '"skipped": 1' in report
