"""Modalities: what a band stack is, so nothing downstream hard-codes band counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ModalityKind = Literal["optical", "sar", "elevation", "categorical", "mask", "metadata", "stack"]


@dataclass(frozen=True)
class Modality:
    """A named stack of co-registered bands and how its stored values map to physical units.

    ``physical = stored / scale``; ``nodata`` is the stored value meaning "no measurement".
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

    @property
    def num_bands(self) -> int:
        return len(self.bands)

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
)
SENTINEL1_GRD = Modality(name="s1", kind="sar", bands=("VV", "VH"), dtype="float32", gsd_m=(10.0, 10.0), units="dB")
DEM = Modality(name="dem", kind="elevation", bands=("elevation",), dtype="float32", gsd_m=(10.0,), units="m")
CLOUD_MASK = Modality(name="cloud", kind="mask", bands=("cloud",), dtype="uint8", gsd_m=(10.0,))
