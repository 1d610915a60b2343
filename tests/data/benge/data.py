"""Fake ben-ge in the real layout (ben-ge-800/8k style): ``<name>_meta.csv``, ``<name>_esaworldcover.csv``,
``<name>_era-5.csv``, ``<name>_climatezones.csv``, BigEarthNet band files ``sentinel-2/<id>/<id>_B01.tif`` ..
(uint16; 10/20/60 m bands at 12/6/2 px) and ``sentinel-1/<s1 id>/<s1 id>_VV.tif``/``_VH.tif`` (float32 dB),
``dem/<id>_dem.tif`` (int16), ``esaworldcover/<id>_esaworldcover.tif`` (uint8 codes); or the ``.npy`` release
(``sentinel-2/s2_npy/<id>_all_bands.npy`` ...), and optional ``splits/<name>_train.csv`` etc."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from eossl.data.importers.benge import S2_FILE_BANDS, WORLDCOVER_CODES
from eossl.data.importers.raster import write_geotiff

PATCHES = (
    ("S2A_MSIL2A_20170613T101031_17_70", "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_17_70", 15),
    ("S2B_MSIL2A_20180204T094159_76_89", "S1B_IW_GRDH_1SDV_20180203T051234_34TCR_76_89", 8),
    ("S2A_MSIL2A_20171002T112112_88_80", "S1A_IW_GRDH_1SDV_20171001T182514_29SND_88_80", 26),
    ("S2B_MSIL2A_20170818T112109_21_67", "S1B_IW_GRDH_1SDV_20170819T064516_32TNS_21_67", 0),
)
"""(Sentinel-2 patch id, Sentinel-1 patch id, Köppen-Geiger climate zone)."""
SIZE = 12
CSV_CLASSES = ("tree_cover", "shrubland", "grassland", "cropland", "built-up", "bare/sparse_vegetation",
               "snow_and_ice", "permanent_water_bodies", "herbaceous_wetland", "mangroves",
               "moss_and_lichen")  # fmt: skip
GSD = {"B01": 60, "B09": 60, "B05": 20, "B06": 20, "B07": 20, "B8A": 20, "B11": 20, "B12": 20}


def s2_values(i: int) -> np.ndarray:
    """``[12, SIZE, SIZE]`` uint16 of patch ``i`` on the 10 m grid: ``1000 * band + 100 * i + pixel``."""
    b, r, c = np.meshgrid(np.arange(12), np.arange(SIZE), np.arange(SIZE), indexing="ij")
    return (1000 * b + 100 * i + r * SIZE + c).astype(np.uint16)


def s1_values(i: int) -> np.ndarray:
    return (-20.0 + np.arange(2 * SIZE * SIZE).reshape(2, SIZE, SIZE) / 50 - i).astype(np.float32)


def dem_values(i: int) -> np.ndarray:
    return (200 * i + np.arange(SIZE * SIZE).reshape(1, SIZE, SIZE)).astype(np.int16)


def worldcover_codes(i: int) -> np.ndarray:
    """Codes of patch ``i``: a left half of one class, a right half of another, a no-data corner."""
    codes = np.empty((SIZE, SIZE), np.uint8)
    codes[:, : SIZE // 2] = WORLDCOVER_CODES[i % 11]
    codes[:, SIZE // 2 :] = WORLDCOVER_CODES[(i + 9) % 11]  # the second is 95 (mangroves) for patch 0
    codes[:2, :2] = 0
    return codes


def fractions(i: int) -> np.ndarray:
    codes = worldcover_codes(i)
    valid = codes[codes > 0]
    return np.array([(valid == code).mean() for code in WORLDCOVER_CODES])


def write_benge(
    folder: Path, name: str = "ben-ge-800", npy: bool = False, splits: bool = False, count: int = len(PATCHES)
) -> Path:
    """The first ``count`` patches in ``folder``; with ``npy`` the .npy release, climate zones in the meta table."""
    folder.mkdir(parents=True, exist_ok=True)
    meta, era, wc = [], [], []
    for i, (s2_id, s1_id, zone) in enumerate(PATCHES[:count]):
        date = pd.Timestamp(s2_id.split("_")[2])
        meta.append({"patch_id": s2_id, "patch_id_s1": s1_id, "timestamp_s2": str(date),
                     "timestamp_s1": str(date + pd.Timedelta(hours=7)), "season_s2": 0.1 * i, "season_s1": 0.1 * i,
                     "lon": 10.0 + i, "lat": 50.0 - i, **({"climatezone": zone} if npy else {})})  # fmt: skip
        era.append({"patch_id": s2_id, "patch_id_s1": s1_id, "atmpressure_level": 950 + i,
                    "temperature_s2": 280.0 + i, "temperature_s1": 281.0 + i, "wind-u_s2": 1.5, "wind-u_s1": -0.5,
                    "wind-v_s2": 0.5, "wind-v_s1": 2.0, "relhumidity_s2": 60.0 + i,
                    "relhumidity_s1": 70.0})  # fmt: skip
        wc.append({"filename": f"{s2_id}_esaworldcover.tif", "patch_id": s2_id,
                   **dict(zip(CSV_CLASSES, fractions(i), strict=True))})  # fmt: skip
        _write_patch(folder, i, s2_id, s1_id, npy)
    pd.DataFrame(meta).to_csv(folder / f"{name}_meta.csv", index=False)
    pd.DataFrame(era).to_csv(folder / f"{name}_era-5.csv", index=False)
    pd.DataFrame(wc).to_csv(folder / f"{name}_esaworldcover.csv", index=False)
    if not npy:
        zones = [{"patch_id": s2_id, "climatezone": zone} for s2_id, _, zone in PATCHES[:count]]
        pd.DataFrame(zones).to_csv(folder / f"{name}_climatezones.csv", index=False)
    if splits:
        (folder / "splits").mkdir(exist_ok=True)
        for split, rows in (("train", PATCHES[:2]), ("val", PATCHES[2:3]), ("test", PATCHES[3:])):
            (folder / "splits" / f"{name}_{split}.csv").write_text("".join(f"{p[0]}\n" for p in rows))
    return folder


def _write_patch(folder: Path, i: int, s2_id: str, s1_id: str, npy: bool) -> None:
    origin = (500000.0 + 1200 * i, 5600000.0)
    if npy:
        for sub, ident, values in (
            ("sentinel-2/s2_npy", s2_id, s2_values(i)),
            ("sentinel-1/s1_npy", s1_id, s1_values(i)),
        ):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            np.save(folder / sub / f"{ident}_all_bands.npy", values)
        for sub, suffix, values in (
            ("dem", "dem", dem_values(i)),
            ("esaworldcover", "esaworldcover", worldcover_codes(i)),
        ):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            np.save(folder / sub / f"{s2_id}_{suffix}.npy", values)
        return
    s2 = s2_values(i)
    for b, band in enumerate(S2_FILE_BANDS):
        step = GSD.get(band, 10) // 10
        write_geotiff(folder / "sentinel-2" / s2_id / f"{s2_id}_{band}.tif", s2[b, ::step, ::step],
                      crs="EPSG:32632", origin=origin, gsd=10.0 * step)  # fmt: skip
    for b, band in enumerate(("VV", "VH")):
        write_geotiff(folder / "sentinel-1" / s1_id / f"{s1_id}_{band}.tif", s1_values(i)[b], crs="EPSG:32632",
                      origin=origin)  # fmt: skip
    write_geotiff(folder / "dem" / f"{s2_id}_dem.tif", dem_values(i), crs="EPSG:32632", origin=origin)
    write_geotiff(folder / "esaworldcover" / f"{s2_id}_esaworldcover.tif", worldcover_codes(i), crs="EPSG:32632",
                  origin=origin)  # fmt: skip
