import numpy as np
import pandas as pd
import pytest

from eossl.data.modality import DEM, SENTINEL2_L2A
from eossl.data.store import SampleStore, StoreError, StoreWriter


def _write(path, n=10, s2=None, overwrite=False):
    writer = StoreWriter(path, n, {"s2": SENTINEL2_L2A, "dem": DEM}, shard_size=4, overwrite=overwrite)
    rng = np.random.default_rng(0)
    s2 = rng.integers(1, 5000, (n, 12, 8, 8)).astype(np.uint16) if s2 is None else s2
    dem = rng.normal(100, 10, (n, 1, 8, 8)).astype(np.float32)
    dem[0, 0, 0, 0] = np.nan
    writer.write({"s2": s2[:6], "dem": dem[:6]}, pd.DataFrame({"location_id": np.arange(6)}))
    writer.write({"s2": s2[6:], "dem": dem[6:]}, pd.DataFrame({"location_id": np.arange(6, n)}))
    return writer.close({"class_names": ["a", "b"]}), s2, dem


def test_roundtrip_random_access_and_stats(tmp_path):
    path, s2, dem = _write(tmp_path / "store")
    store = SampleStore(path)
    assert len(store) == 10 and store.class_names == ("a", "b")
    np.testing.assert_array_equal(store.read("s2", np.array([7, 2, 7])), s2[[7, 2, 7]])
    stats = store.stats["s2"]
    np.testing.assert_allclose(stats["mean"], s2.mean(axis=(0, 2, 3)) / 10000, rtol=1e-6)
    np.testing.assert_allclose(stats["std"], s2.std(axis=(0, 2, 3)) / 10000, rtol=1e-5)
    assert store.stats["dem"]["nonfinite"] == [1]
    np.testing.assert_allclose(store.stats["dem"]["mean"], [np.nanmean(dem)], rtol=1e-5)
    assert "non-finite values in dem" in store.summary()


def test_write_is_atomic_and_refuses_to_clobber(tmp_path):
    path = tmp_path / "store"
    writer = StoreWriter(path, 4, {"dem": DEM})
    writer.write({"dem": np.zeros((2, 1, 4, 4), np.float32)}, pd.DataFrame({"x": [0, 1]}))
    assert not path.exists()  # nothing visible until close()
    with pytest.raises(StoreError, match="got 2 of 4"):
        writer.close()
    assert not path.exists() and not list(tmp_path.iterdir())
    _write(path)
    with pytest.raises(StoreError, match="already exists"):
        _write(path)
    _write(path, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["store"]


def test_bad_band_count_names_the_modality(tmp_path):
    writer = StoreWriter(tmp_path / "s", 2, {"s2": SENTINEL2_L2A})
    with pytest.raises(StoreError, match=r"modality 's2' expects \[N, 12, H, W\].*B1.*got shape \(2, 3, 8, 8\)"):
        writer.write({"s2": np.zeros((2, 3, 8, 8), np.uint16)}, pd.DataFrame({"x": [0, 1]}))


def test_missing_store_and_array_errors(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        SampleStore(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="not an eossl sample store"):
        SampleStore(tmp_path / "empty")
    path, _, _ = _write(tmp_path / "store")
    with pytest.raises(StoreError, match="no array 's1'"):
        SampleStore(path).read("s1", [0])


def test_synthetic_store_has_every_modality_and_target(small_store):
    store = SampleStore(small_store)
    assert {"s2", "s1", "dem", "lulc", "cloud", "multilabel"} <= set(store.arrays)
    assert {"location_id", "season", "lat", "lon", "climate_zone", "label", "tree_cover"} <= set(store.table.columns)
    assert store.modalities["s2"].wavelengths_nm[1] == 490.0
    assert len(store.stats["s2"]["mean"]) == 12
