"""Modalities: what a band stack is, so nothing downstream hard-codes band counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

ModalityKind = Literal["optical", "sar", "elevation", "categorical", "mask", "metadata", "stack"]


@dataclass(frozen=True)
class Modality:
    """A named stack of co-registered bands and how its stored values map to physical units.

    ``physical = (stored + offset) / scale``; ``nodata`` is the stored value meaning "no measurement".
    Sentinel-2 products of processing baseline 04.00 and later carry ``offset = -1000`` (their DN are
    reflectance x 10000 + 1000); SAR ``units`` say ``dB`` or ``linear power``. ``product`` names the
    processing level (``L1C``, ``L2A``, ``GRD``, ...) so that data of another level can be recognised.
    """

    name: str
    kind: ModalityKind
    bands: tuple[str, ...]
    dtype: str
    gsd_m: tuple[float, ...]
    wavelengths_nm: tuple[float, ...] | None = None
    scale: float = 1.0
    nodata: float | None = None
    units: str = ""
    class_names: tuple[str, ...] = field(default=())
    offset: float = 0.0
    product: str = ""

    @property
    def num_bands(self) -> int:
        return len(self.bands)

    def to_physical(self, stored: np.ndarray) -> np.ndarray:
        """Stored values as float32 physical units, ``nodata`` (and nothing else) turned into NaN."""
        x = stored.astype(np.float32)
        if self.offset:
            x += np.float32(self.offset)
        if self.scale != 1:
            x /= np.float32(self.scale)
        if self.nodata is not None:
            x[stored == self.nodata] = np.nan
        return x

    @property
    def continuous(self) -> bool:
        """Whether values are measurements (normalised, interpolated) rather than class ids."""
        return self.kind in ("optical", "sar", "elevation", "metadata", "stack")


S2_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12")
S2_WAVELENGTHS = (443.0, 490.0, 560.0, 665.0, 705.0, 740.0, 783.0, 842.0, 865.0, 945.0, 1610.0, 2190.0)
S2_GSD = (60.0, 10.0, 10.0, 10.0, 20.0, 20.0, 20.0, 10.0, 20.0, 60.0, 20.0, 20.0)

SENTINEL2_L2A = Modality(
    name="s2",
    kind="optical",
    bands=S2_BANDS,
    dtype="uint16",
    gsd_m=S2_GSD,
    wavelengths_nm=S2_WAVELENGTHS,
    scale=10000.0,
    nodata=0,
    units="surface reflectance x 10000",
    product="L2A",
)
SENTINEL1_GRD = Modality(
    name="s1", kind="sar", bands=("VV", "VH"), dtype="float32", gsd_m=(10.0, 10.0), units="dB", product="GRD"
)
DEM = Modality(name="dem", kind="elevation", bands=("elevation",), dtype="float32", gsd_m=(10.0,), units="m")
CLOUD_MASK = Modality(name="cloud", kind="mask", bands=("cloud",), dtype="uint8", gsd_m=(10.0,))
