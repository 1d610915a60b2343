"""Fake BigEarthNet in the real layouts, in miniature.

v1.0 (as ``shared/data/bigearthnet-example`` and the archives ``BigEarthNet-S2-v1.0.tar.gz`` /
``BigEarthNet-S1-v1.0.tar.gz`` unpack): ``BigEarthNet-v1.0/<s2>/<s2>_B01.tif .. _B12.tif, _B8A.tif``
(uint16, one band per file: ``size`` px at 10 m, ``size/2`` at 20 m, ``size/6`` at 60 m, UTM) with
``<s2>_labels_metadata.json`` (labels, coordinates ulx/uly/lrx/lry, projection WKT, tile_source,
acquisition_date); ``BigEarthNet-S1-v1.0/<s1>/<s1>_VV.tif, _VH.tif`` (float32 dB) with a json holding
coordinates ulx/uly/lrx/lly, corresponding_s2_patch, scene_source, acquisition_time; the split lists
``train.csv``/``val.csv``/``test.csv`` and the snow / cloud lists.

v2.0 (reBEN): ``BigEarthNet-S2/<tile product>/<patch>/<patch>_Bxx.tif``,
``BigEarthNet-S1/<S1 product>/<patch>/<patch>_VV.tif`` and ``metadata.csv`` (the columns of
``metadata.parquet``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rasterio.crs import CRS

from eossl.data.importers.bigearthnet import S2_FACTOR, S2_FILES
from eossl.data.importers.raster import write_geotiff


@dataclass(frozen=True)
class FakePatch:
    """One place: its S2 and S1 names, UTM zone and grid cell, 43-class labels and listing."""

    s2: str
    s1: str
    epsg: int
    row: int
    col: int
    labels: tuple[str, ...]
    listed: str  # train / val / test, or snow / cloud (in the exclusion lists, in no split)
    labels_19: tuple[str, ...] = ()

    @property
    def tile(self) -> str:
        return self.s1.split("_")[-3]


PATCHES = (
    FakePatch("S2A_MSIL2A_20170613T101031_0_0", "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_0_0", 32633, 0, 0,
              ("Non-irrigated arable land", "Pastures"), "train", ("Arable land", "Pastures")),
    FakePatch("S2A_MSIL2A_20170613T101031_0_1", "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_0_1", 32633, 0, 1,
              ("Coniferous forest", "Mixed forest", "Transitional woodland/shrub"), "train",
              ("Coniferous forest", "Mixed forest", "Transitional woodland, shrub")),
    FakePatch("S2A_MSIL2A_20170613T101031_1_0", "S1A_IW_GRDH_1SDV_20170614T165154_33UUP_1_0", 32633, 1, 0,
              ("Port areas", "Estuaries", "Sea and ocean"), "val", ("Marine waters",)),
    FakePatch("S2A_MSIL2A_20170613T101031_1_1", "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_1_1", 32633, 1, 1,
              ("Road and rail networks and associated land", "Airports"), "test", ()),
    FakePatch("S2B_MSIL2A_20180204T94161_0_0", "S1A_IW_GRDH_1SDV_20180204T043253_35VPK_0_0", 32635, 0, 0,
              ("Inland marshes", "Peatbogs", "Water bodies"), "test", ("Inland wetlands", "Inland waters")),
    FakePatch("S2B_MSIL2A_20180204T94161_0_1", "S1A_IW_GRDH_1SDV_20180204T043253_35VPK_0_1", 32635, 0, 1,
              ("Coniferous forest",), "snow", ("Coniferous forest",)),
    FakePatch("S2B_MSIL2A_20180204T94161_1_0", "S1A_IW_GRDH_1SDV_20180204T043253_35VPK_1_0", 32635, 1, 0,
              ("Mixed forest",), "cloud", ("Mixed forest",)),
)  # fmt: skip
ORIGIN = {32633: (404400.0, 5342400.0), 32635: (668400.0, 6954420.0)}
L1C = {"S2A": "S2A_MSIL1C_20170613T101031_N0205_R022_T33UUP_20170613T101608.SAFE",
       "S2B": "S2B_MSIL1C_20180204T94161_N0206_R036_T35VPK_20180204T115809.SAFE"}  # fmt: skip


def band_values(index: int, band: int, shape: tuple[int, int]) -> np.ndarray:
    """Band ``band`` (0..11, preset order) of patch ``index``: in [1000 (band+1), 1000 (band+1) + 500)."""
    rng = np.random.default_rng(100 * index + band)
    return (1000 * (band + 1) + 10 * index + rng.integers(0, 400, shape)).astype(np.uint16)


def s1_values(index: int, size: int) -> np.ndarray:
    """VV around -10 - index dB, VH around -20 - index dB."""
    rng = np.random.default_rng(500 + index)
    base = np.array([-10.0 - index, -20.0 - index])[:, None, None]
    return (base + rng.normal(0, 1, (2, size, size))).astype(np.float32)


def _corner(patch: FakePatch, size: int) -> tuple[float, float]:
    x, y = ORIGIN[patch.epsg]
    return x + patch.col * size * 10.0, y - patch.row * size * 10.0


def _write_bands(folder: Path, name: str, index: int, patch: FakePatch, size: int) -> None:
    ulx, uly = _corner(patch, size)
    for band, suffix in enumerate(S2_FILES):
        factor = S2_FACTOR.get(suffix, 1)
        values = band_values(index, band, (size // factor, size // factor))
        crs = f"EPSG:{patch.epsg}"
        write_geotiff(folder / f"{name}_{suffix}.tif", values, crs=crs, origin=(ulx, uly), gsd=10.0 * factor)


def _write_s1(folder: Path, name: str, index: int, patch: FakePatch, size: int) -> None:
    ulx, uly = _corner(patch, size)
    for band, suffix in enumerate(("VV", "VH")):
        values = s1_values(index, size)[band]
        write_geotiff(folder / f"{name}_{suffix}.tif", values, crs=f"EPSG:{patch.epsg}", origin=(ulx, uly))


def write_bigearthnet_v1(folder: Path, size: int = 12, splits: bool = True, pairs: bool = False) -> Path:
    """All of :data:`PATCHES` in the v1.0 layout; ``splits``: write train/val/test.csv (``pairs``: "s2,s1" lines)."""
    for index, patch in enumerate(PATCHES):
        ulx, uly = _corner(patch, size)
        coords = {"ulx": ulx, "uly": uly, "lrx": ulx + 10 * size}
        wkt = CRS.from_epsg(patch.epsg).to_wkt()
        date = patch.s2.split("_")[2]
        s2_dir = folder / "BigEarthNet-v1.0" / patch.s2
        _write_bands(s2_dir, patch.s2, index, patch, size)
        day = f"{date[:4]}-{date[4:6]}-{date[6:8]}"
        s2_meta = {"labels": list(patch.labels), "coordinates": {**coords, "lry": uly - 10 * size}, "projection": wkt,
                   "tile_source": L1C[patch.s2[:3]], "acquisition_date": f"{day} 10:10:31"}  # fmt: skip
        (s2_dir / f"{patch.s2}_labels_metadata.json").write_text(json.dumps(s2_meta))
        s1_dir = folder / "BigEarthNet-S1-v1.0" / patch.s1
        _write_s1(s1_dir, patch.s1, index, patch, size)
        when = patch.s1.split("_")[4]
        stamp = f"{when[:4]}-{when[4:6]}-{when[6:8]}T{when[9:11]}:{when[11:13]}:{when[13:]}"
        s1_meta = {"labels": list(patch.labels), "coordinates": {**coords, "lly": uly - 10 * size}, "projection": wkt,
                   "corresponding_s2_patch": patch.s2, "scene_source": f"{patch.s1[:32]}_{when}_017018_01C579_7EEC",
                   "acquisition_time": stamp}  # fmt: skip
        (s1_dir / f"{patch.s1}_labels_metadata.json").write_text(json.dumps(s1_meta))
    if splits:
        write_split_files(folder, pairs)
    for listed, file in (("snow", "patches_with_seasonal_snow.csv"), ("cloud", "patches_with_cloud_and_shadow.csv")):
        (folder / file).write_text("\n".join(p.s2 for p in PATCHES if p.listed == listed) + "\n")
    return folder


def write_split_files(folder: Path, pairs: bool = False) -> None:
    """train.csv, val.csv, test.csv: one S2 name per line (``pairs``: "s2,s1" as BigEarthNet-MM's lists)."""
    for split in ("train", "val", "test"):
        lines = [f"{p.s2},{p.s1}" if pairs else p.s2 for p in PATCHES if p.listed == split]
        (folder / f"{split}.csv").write_text("\n".join(lines) + "\n")


def v2_names(patch: FakePatch) -> tuple[str, str]:
    """reBEN's patch_id (``<S2 product>_N9999_R022_T<tile>_<row>_<col>``) and s1_name of a patch."""
    product = "_".join(patch.s2.split("_")[:3])
    return f"{product}_N9999_R022_T{patch.tile}_{patch.row}_{patch.col}", patch.s1


def write_bigearthnet_v2(folder: Path, size: int = 12) -> Path:
    """All of :data:`PATCHES` in the v2.0 (reBEN) layout with ``metadata.csv`` (19-class labels)."""
    rows = []
    for index, patch in enumerate(PATCHES):
        patch_id, s1 = v2_names(patch)
        _write_bands(folder / "BigEarthNet-S2" / patch_id.rsplit("_", 2)[0] / patch_id, patch_id, index, patch, size)
        _write_s1(folder / "BigEarthNet-S1" / s1.rsplit("_", 3)[0] / s1, s1, index, patch, size)
        labels = list(patch.labels_19) or ["Urban fabric"]
        text = str(labels) if index % 2 == 0 else "[" + " ".join(f"'{n}'" for n in labels) + "]"  # numpy's repr
        split = {"val": "validation", "snow": "train", "cloud": "test"}.get(patch.listed, patch.listed)
        flags = {"contains_seasonal_snow": patch.listed == "snow", "contains_cloud_or_shadow": patch.listed == "cloud"}
        rows.append(
            {"patch_id": patch_id, "labels": text, "split": split, "country": "Austria", "s1_name": s1, **flags}
        )
    pd.DataFrame(rows).to_csv(folder / "metadata.csv", index=False)
    return folder
