"""Tiny fake datasets in the real layouts for the fuzz tests, written once per test module (from the
fake-data writers of ``tests/data/<dataset>/data.py``, pruned to two or three samples so that an
import takes a fraction of a second), and the options each is imported with."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eossl.data.importers.raster import write_geotiff
from tests.data.bigearthnet.data import PATCHES, write_bigearthnet_v1, write_bigearthnet_v2
from tests.data.dfc2020.data import file_path, write_dfc2020
from tests.data.eurosat.data import ROOT, write_eurosat
from tests.data.geotiff_folder.data import CRS, ORIGIN, write_csv, write_per_band, write_per_sample
from tests.data.sen12ms.data import write_sen12ms
from tests.data.ssl4eo_s12.data import write_ssl4eo_s12


@dataclass(frozen=True)
class Dataset:
    """A fake dataset: the importer, how to write it into a folder, the import options."""

    kind: str
    write: Callable[[Path], Path]
    options: dict[str, Any] = field(default_factory=dict)


GEOTIFF_NAMES = ("a_20200101", "b", "c")


def _geotiff_folder(folder: Path) -> Path:
    """Three 12-band file-per-sample images with masks, a labels CSV (with split) and a metadata CSV."""
    write_per_sample(folder, list(GEOTIFF_NAMES), size=8)
    mask = (np.add.outer(np.arange(8), np.arange(8)) % 3).astype(np.uint8)
    for i, name in enumerate(GEOTIFF_NAMES):
        origin = (ORIGIN[0] + 1000 * i, ORIGIN[1])
        write_geotiff(folder / "images" / f"{name}_mask.tif", mask, crs=CRS, origin=origin)
    labels = [("water", "train"), ("forest", "train"), ("water", "test")]
    write_csv(
        folder / "labels.csv",
        [{"fn": f"{n}.tif", "y": y, "split": s} for n, (y, s) in zip(GEOTIFF_NAMES, labels, strict=True)],
    )
    write_csv(
        folder / "meta.csv",
        [
            {"fn": f"{n}.tif", "lat": 45.0 + i, "lon": 15.0, "time": f"2020-0{i + 1}-01", "location_id": f"p{i}"}
            for i, n in enumerate(GEOTIFF_NAMES)
        ],
    )
    return folder


GEOTIFF_OPTIONS = {
    "labels": "labels.csv",
    "label_column": "y",
    "split_column": "split",
    "metadata": "meta.csv",
    "masks": "{stem}_mask.tif",
    "mask_classes": ["a", "b", "c"],
}


def _geotiff_bands(folder: Path) -> Path:
    """Two samples of one file per band (10, 20, 60 m) in sub-folders."""
    return write_per_band(folder, ["s1", "s2"])


def _bigearthnet_v1(folder: Path) -> Path:
    """The first two patches of the fake v1.0 (both train) with S1, split and snow/cloud lists."""
    write_bigearthnet_v1(folder, size=6)
    for patch in PATCHES[2:]:
        shutil.rmtree(folder / "BigEarthNet-v1.0" / patch.s2)
        shutil.rmtree(folder / "BigEarthNet-S1-v1.0" / patch.s1)
    return folder


def _bigearthnet_v2(folder: Path) -> Path:
    """The fake v2.0 (reBEN) pruned to the rows of its first three patches."""
    write_bigearthnet_v2(folder, size=6)
    table = pd.read_csv(folder / "metadata.csv")
    for _, row in table.iloc[3:].iterrows():
        shutil.rmtree(folder / "BigEarthNet-S2" / row["patch_id"].rsplit("_", 2)[0] / row["patch_id"])
        shutil.rmtree(folder / "BigEarthNet-S1" / row["s1_name"].rsplit("_", 3)[0] / row["s1_name"])
    table.iloc[:3].to_csv(folder / "metadata.csv", index=False)
    return folder


def _ssl4eo_s12(folder: Path) -> Path:
    """Two locations, one timestamp of S1 and S2 L2A, 6 x 6 px."""
    return write_ssl4eo_s12(folder, locations=2, size=6, products=("s1", "s2a"), timestamps=1)


def _eurosat(folder: Path) -> Path:
    """EuroSAT MS with three patches left (the ten class folders stay) and the split files."""
    write_eurosat(folder, per_class=1, size=8)
    keep = {"AnnualCrop_1.tif", "Forest_1.tif", "River_1.tif"}
    for path in (folder / ROOT).rglob("*.tif"):
        if path.name not in keep:
            path.unlink()
    return folder


def _dfc2020(folder: Path) -> Path:
    """DFC2020 with validation patches 0 and 1 and test patch 0 (and the macOS junk file)."""
    write_dfc2020(folder, size=8)
    for subset, n in (("validation", 2), ("validation", 5), ("test", 3)):
        for kind in ("s1", "s2", "dfc", "lc"):
            file_path(folder, subset, kind, n).unlink(missing_ok=True)
    return folder


def _sen12ms(folder: Path) -> Path:
    """SEN12MS with one season of two scenes (one a hold-out) of one patch, and the three list files."""
    write_sen12ms(folder, size=8, holdout_file=True)
    for season in ("ROIs1868_summer", "ROIs1970_fall", "ROIs2017_winter"):
        shutil.rmtree(folder / season)
    for path in (folder / "ROIs1158_spring").rglob("*_p30.tif"):
        path.unlink()
    return folder


DATASETS: dict[str, Dataset] = {
    "geotiff-folder": Dataset("geotiff-folder", _geotiff_folder, GEOTIFF_OPTIONS),
    "geotiff-folder-bands": Dataset("geotiff-folder", _geotiff_bands),
    "bigearthnet-v1": Dataset("bigearthnet", _bigearthnet_v1),
    "bigearthnet-v2": Dataset("bigearthnet", _bigearthnet_v2),
    "ssl4eo-s12": Dataset("ssl4eo-s12", _ssl4eo_s12, {"size": 6}),
    "eurosat": Dataset("eurosat", _eurosat),
    "dfc2020": Dataset("dfc2020", _dfc2020),
    "sen12ms": Dataset("sen12ms", _sen12ms),
}


class Templates:
    """Each dataset written on first use into one folder (a module-scoped fixture holds one of these)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._written: dict[str, Path] = {}

    def __getitem__(self, name: str) -> Path:
        if name not in self._written:
            self._written[name] = DATASETS[name].write(self.root / name)
        return self._written[name]


def files(source: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The files under ``source`` ending in one of ``suffixes``, relative to it, sorted (less macOS junk)."""
    found = (p for p in source.rglob("*") if p.is_file() and p.name.endswith(suffixes))
    return sorted(p.relative_to(source) for p in found if not p.name.startswith("._"))
