"""Fake EuroSAT MS in the real layout: ds/images/remote_sensing/otherDatasets/sentinel_2/tif/<Class>/<Class>_<n>.tif
(13-band uint16 GeoTIFFs, 64 x 64 at 10 m in UTM) and TorchGeo's split files listing RGB names."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eossl.data.importers.eurosat import CLASSES
from eossl.data.importers.raster import write_geotiff

ROOT = "ds/images/remote_sensing/otherDatasets/sentinel_2/tif"


def write_eurosat(folder: Path, per_class: int = 2, size: int = 16, seed: int = 0) -> Path:
    """``per_class`` patches per class; split files put patch 1 in train, 2 in val, the rest in test."""
    rng = np.random.default_rng(seed)
    names: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for label, name in enumerate(CLASSES):
        for n in range(1, per_class + 1):
            values = rng.integers(500 + 100 * label, 3000, (13, size, size)).astype(np.uint16)
            write_geotiff(
                folder / ROOT / name / f"{name}_{n}.tif",
                values,
                crs="EPSG:32632",
                origin=(600000.0 + 1000 * n, 5200000.0 - 1000 * label),
            )
            names["train" if n == 1 else "val" if n == 2 else "test"].append(f"{name}_{n}.jpg")
    for split, files in names.items():
        (folder / f"eurosat-{split}.txt").write_text("\n".join(files) + "\n")
    return folder
