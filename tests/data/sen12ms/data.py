"""Fake SEN12MS in the real layout (as TorchGeo's tests/data/sen12ms/data.py):
ROIs<nnnn>_<season>/{s1,s2,lc}_<scene>/ROIs<nnnn>_<season>_{s1,s2,lc}_<scene>_p<patch>.tif in UTM, with
s1 2 bands float32 dB (one NaN pixel), s2 13 bands uint16, lc 4 bands uint16 (IGBP 1..17, LCCS), and the
toolbox's split files train_list.txt / test_list.txt (Sentinel-2 names) and SEN12MS_holdOutScenes.txt.

Values encode what they are: S2 band ``b`` of a patch is ``1000 + 100 * b + patch`` (+ 0..4 noise),
S1 VV/VH are about -10 / -20 dB; the IGBP band holds :func:`igbp_map`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eossl.data.importers.raster import write_geotiff

SEASONS = ("ROIs1158_spring", "ROIs1868_summer", "ROIs1970_fall", "ROIs2017_winter")
SCENES = (3, 12)  # per season; scene 12 of each season is a hold-out (test) scene
PATCHES = (7, 30)
HOLDOUT_SCENE = 12
UNLISTED = ("ROIs1868_summer", 3, 30)  # left out of train_list, as the damaged triplet of the real lists


def igbp_map(size: int, patch: int) -> np.ndarray:
    """IGBP values of a patch: mostly class 12 (croplands, or 10 grasslands in patch 30), a band of 1
    (forest) and 17 (water), one fill pixel (255)."""
    values = np.full((size, size), 12 if patch != 30 else 10, dtype=np.uint16)
    values[:, :3] = 1
    values[:2, :] = 17
    values[-1, -1] = 255
    return values


def patch_name(season: str, kind: str, scene: int, patch: int) -> str:
    """The file name of one patch of one kind (s1, s2, lc)."""
    return f"{season}_{kind}_{scene}_p{patch}.tif"


def write_sen12ms(
    folder: Path, size: int = 16, split_files: bool = True, holdout_file: bool = False, seed: int = 0
) -> Path:
    """Four seasons x two scenes x two patches; the split lists put scene 12 in test, the rest in train
    (less :data:`UNLISTED`)."""
    rng = np.random.default_rng(seed)
    lists: dict[str, list[str]] = {"train": [], "test": []}
    for s, season in enumerate(SEASONS):
        for scene in SCENES:
            # scenes far apart, patches of one scene side by side (UTM 37S, as TorchGeo's fixture)
            x0, y0 = 390000.0 + 100000 * s + 50000 * (scene == HOLDOUT_SCENE), 8114000.0
            for p, patch in enumerate(PATCHES):
                origin = (x0 + p * size * 10, y0)
                s1 = np.stack([np.full((size, size), -10.0), np.full((size, size), -20.0)])
                s1 = (s1 + rng.normal(0, 0.5, s1.shape)).astype(np.float32)
                s1[1, 0, 0] = np.nan
                s2 = np.stack([np.full((size, size), 1000 + 100 * b + patch) for b in range(13)])
                s2 = (s2 + rng.integers(0, 5, s2.shape)).astype(np.uint16)
                lc = np.stack([igbp_map(size, patch), *(np.full((size, size), 10 + k, np.uint16) for k in range(3))])
                for kind, values in (("s1", s1), ("s2", s2), ("lc", lc)):
                    path = folder / season / f"{kind}_{scene}" / patch_name(season, kind, scene, patch)
                    write_geotiff(path, values, crs="EPSG:32737", origin=origin)
                if (season, scene, patch) != UNLISTED:
                    split = "test" if scene == HOLDOUT_SCENE else "train"
                    lists[split].append(patch_name(season, "s2", scene, patch))
    if split_files:
        for split, names in lists.items():
            (folder / f"{split}_list.txt").write_text("\n".join(names) + "\n")
    if holdout_file:
        lines = [f"{season}/s1_{HOLDOUT_SCENE}" for season in SEASONS]
        (folder / "SEN12MS_holdOutScenes.txt").write_text("\n".join(lines) + "\n")
    return folder
