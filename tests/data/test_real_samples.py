"""Smoke test on real BigEarthNet Sentinel-2 L2A patches from ../shared/data (skipped when absent)."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SHARED_DATA

from eossl.config import DataConfig, PretrainConfig
from eossl.data.datamodule import StoreDataset
from eossl.data.modality import S2_BANDS, SENTINEL2_L2A
from eossl.data.store import SampleStore, StoreWriter
from eossl.methods.registry import METHODS

BEN_S2 = SHARED_DATA / "bigearthnet-example" / "BigEarthNet-S2-Example"


def _read_patch(folder) -> np.ndarray:
    """12 bands on the 10 m grid (120 x 120): 20 m and 60 m bands repeated like a nearest resampling."""
    rasterio = pytest.importorskip("rasterio")
    bands = []
    for band in S2_BANDS:
        name = band if band == "B8A" else f"B{int(band[1:]):02d}"
        with rasterio.open(folder / f"{folder.name}_{name}.tif") as src:
            data = src.read(1)
        factor = 120 // data.shape[0]
        bands.append(np.repeat(np.repeat(data, factor, 0), factor, 1))
    return np.stack(bands).astype(np.uint16)


@pytest.mark.skipif(not BEN_S2.exists(), reason=f"real samples not found at {BEN_S2}")
def test_real_bigearthnet_patches_flow_through_store_and_simclr(tmp_path):
    folders = sorted(p for p in BEN_S2.iterdir() if p.is_dir())
    patches = np.stack([_read_patch(f) for f in folders])
    writer = StoreWriter(tmp_path / "ben", len(patches), {"s2": SENTINEL2_L2A})
    writer.write({"s2": patches}, pd.DataFrame({"location_id": np.arange(len(patches)), "label": 0}))
    store = SampleStore(writer.close())
    means = np.asarray(store.stats["s2"]["mean"])
    # real L2A reflectance: visible bands darker than NIR over these vegetated patches, all in (0, 1)
    assert np.all((means > 0) & (means < 1))
    assert means[S2_BANDS.index("B8")] > means[S2_BANDS.index("B4")]
    batch = StoreDataset(store, np.arange(len(patches)), ["s2"], []).__getitems__(list(range(len(patches))))
    cfg = PretrainConfig(data=DataConfig(store=store.path)).model_dump(mode="json")
    model = METHODS["simclr"](cfg, [asdict(store.modalities["s2"])], {"s2": store.stats["s2"]})
    model.log = lambda *a, **k: None
    loss = model.training_step({"s2": batch["s2"][:, :, :64, :64]}, 0)
    assert torch.isfinite(loss)
