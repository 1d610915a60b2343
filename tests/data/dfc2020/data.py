"""Fake DFC2020 in the layout of the IEEE DataPort archives as extracted for the DFC2020 baseline:
ROIs0000_validation/{s1_validation,s2_validation,dfc_validation,lc_validation}/ROIs0000_validation_<kind>_0_p<n>.tif
and ROIs0000_test/{s1_0,s2_0,dfc_0}/ROIs0000_test_<kind>_0_p<n>.tif, in UTM: s1 2 bands float64 dB
(as the real files), s2 13 bands uint16, dfc 1 band uint8 with the DFC classes 1..10 less Savanna (3)
and Snow/Ice (8), lc 4 bands (MODIS, ignored by the importer) and a macOS ``._`` copy (ignored).

Values encode what they are: S2 band ``b`` of patch ``n`` is ``1000 + 100 * b + n`` (+ 0..4 noise);
the label map is :func:`dfc_map`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eossl.data.importers.raster import write_geotiff

SETS = {"validation": ("ROIs0000_validation", "validation", (0, 1, 2, 5)), "test": ("ROIs0000_test", "0", (0, 3))}
"""set -> (ROI, folder suffix, patch numbers)."""


def dfc_map(size: int, n: int) -> np.ndarray:
    """Label values of patch ``n``: Forest (1) on the left half, Croplands (6) or Water (10, odd n) on
    the right, one row of Barren (9)."""
    values = np.ones((size, size), dtype=np.uint8)
    values[:, size // 2 :] = 10 if n % 2 else 6
    values[-1] = 9
    return values


def file_path(folder: Path, subset: str, kind: str, n: int) -> Path:
    """Where the ``kind`` file of patch ``n`` of ``subset`` (validation, test) lies."""
    roi, suffix, _ = SETS[subset]
    return folder / roi / f"{kind}_{suffix}" / f"{roi}_{kind}_0_p{n}.tif"


def write_dfc2020(folder: Path, size: int = 16, seed: int = 0) -> Path:
    """Four validation and two test patches; validation patches 0 and 1 are neighbours (one place)."""
    rng = np.random.default_rng(seed)
    for s, (subset, (_, _, patches)) in enumerate(SETS.items()):
        for n in patches:
            # UTM 32N near 48.5 N 9 E; patches 0, 1 side by side, others tens of km away
            origin = (500000.0 + 30000 * s + (size * 10 * n if n < 2 else 20000 * n), 5370000.0)
            s1 = np.stack([np.full((size, size), -10.0), np.full((size, size), -17.0)]) + rng.normal(
                0, 0.5, (2, size, size)
            )
            s2 = np.stack([np.full((size, size), 1000 + 100 * b + n) for b in range(13)])
            s2 = (s2 + rng.integers(0, 5, s2.shape)).astype(np.uint16)
            lc = np.stack([np.full((size, size), v, np.uint16) for v in (12, 10, 11, 12)])
            arrays = {"s1": s1.astype(np.float64), "s2": s2, "dfc": dfc_map(size, n), "lc": lc}
            for kind, values in arrays.items():
                if kind == "lc" and subset == "test":
                    continue
                write_geotiff(file_path(folder, subset, kind, n), values, crs="EPSG:32632", origin=origin)
    junk = file_path(folder, "validation", "s2", 0)
    (junk.parent / f"._{junk.name}").write_bytes(b"\x00\x05\x16\x07")  # macOS metadata, not a raster
    return folder
