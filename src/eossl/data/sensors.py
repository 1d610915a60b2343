"""Sensor presets: band names, centre wavelengths, GSD, units and the stored-value conventions of the
sensors EO users have, so an importer gets a correct :class:`~eossl.data.modality.Modality` by name.

Presets (``SENSORS``): ``s2-l1c`` (13 bands, top-of-atmosphere reflectance x 10000), ``s2-l2a`` (12
bands, surface reflectance x 10000; B10 is not in L2A products), ``s1-grd`` (VV, VH backscatter in dB),
``s1-grd-linear`` (the same in linear power), ``landsat-oli-l2`` (Landsat 8/9 Collection 2 Level-2
surface reflectance SR_B1..SR_B7: reflectance = DN x 0.0000275 - 0.2), ``landsat-oli-l1`` (Level-1
B1..B7 and B9 top-of-atmosphere reflectance: DN x 0.00002 - 0.1) and ``enmap-l2a`` (224 bands,
420-2450 nm, reflectance x 10000; nominal centre wavelengths, which an importer replaces by the
product's own where it has them).

A sensor not listed here is described by a small YAML file (:func:`sensor_from_yaml`)::

    kind: optical            # optical | sar | elevation | stack
    dtype: uint16
    scale: 10000             # physical = (stored + offset) / scale
    offset: 0
    nodata: 0
    units: surface reflectance x 10000
    product: L2A
    bands:
      - {name: B2, wavelength_nm: 490, gsd_m: 10}
      - {name: B3, wavelength_nm: 560, gsd_m: 10}

Sentinel-2 processing baseline 04.00 (products from 25 January 2022 on) added ``BOA_ADD_OFFSET`` /
``RADIO_ADD_OFFSET`` = -1000 to the DN: :func:`sentinel2_offset` finds it from a product name
(``_N0400_``) or, failing that, from the acquisition date, and says which it used.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from eossl.data.modality import S2_BANDS, S2_GSD, S2_WAVELENGTHS, Modality
from eossl.errors import ConfigError

S2_L1C_BANDS = (*S2_BANDS[:10], "B10", *S2_BANDS[10:])
S2_L1C_WAVELENGTHS = (*S2_WAVELENGTHS[:10], 1375.0, *S2_WAVELENGTHS[10:])
S2_L1C_GSD = (*S2_GSD[:10], 60.0, *S2_GSD[10:])
BASELINE_0400_DATE = date(2022, 1, 25)
"""First acquisitions processed with Sentinel-2 processing baseline 04.00 (offset -1000)."""


def _enmap_wavelengths() -> tuple[float, ...]:
    """Nominal EnMAP centre wavelengths: 91 VNIR bands 418-993 nm and 133 SWIR bands 902-2445 nm."""
    vnir = np.linspace(418.2, 992.9, 91)
    swir = np.linspace(902.4, 2445.5, 133)
    return tuple(round(float(w), 1) for w in np.concatenate([vnir, swir]))


ENMAP_WAVELENGTHS = _enmap_wavelengths()

SENSORS: dict[str, Modality] = {
    "s2-l1c": Modality(
        name="s2",
        kind="optical",
        bands=S2_L1C_BANDS,
        dtype="uint16",
        gsd_m=S2_L1C_GSD,
        wavelengths_nm=S2_L1C_WAVELENGTHS,
        scale=10000.0,
        nodata=0,
        units="TOA reflectance x 10000",
        product="L1C",
    ),
    "s2-l2a": Modality(
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
    ),
    "s1-grd": Modality(
        name="s1",
        kind="sar",
        bands=("VV", "VH"),
        dtype="float32",
        gsd_m=(10.0, 10.0),
        units="dB",
        product="GRD",
    ),
    "s1-grd-linear": Modality(
        name="s1",
        kind="sar",
        bands=("VV", "VH"),
        dtype="float32",
        gsd_m=(10.0, 10.0),
        units="linear power",
        product="GRD",
    ),
    "landsat-oli-l2": Modality(
        name="landsat",
        kind="optical",
        bands=tuple(f"SR_B{i}" for i in range(1, 8)),
        dtype="uint16",
        gsd_m=(30.0,) * 7,
        wavelengths_nm=(443.0, 482.0, 561.0, 655.0, 865.0, 1609.0, 2201.0),
        scale=1 / 0.0000275,
        offset=-0.2 / 0.0000275,
        nodata=0,
        units="surface reflectance (C2 L2 DN)",
        product="L2SP",
    ),
    "landsat-oli-l1": Modality(
        name="landsat",
        kind="optical",
        bands=("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B9"),
        dtype="uint16",
        gsd_m=(30.0,) * 8,
        wavelengths_nm=(443.0, 482.0, 561.0, 655.0, 865.0, 1609.0, 2201.0, 1373.0),
        scale=1 / 0.00002,
        offset=-0.1 / 0.00002,
        nodata=0,
        units="TOA reflectance (C2 L1 DN)",
        product="L1TP",
    ),
    "enmap-l2a": Modality(
        name="hsi",
        kind="optical",
        bands=tuple(f"B{i + 1:03d}" for i in range(len(ENMAP_WAVELENGTHS))),
        dtype="int16",
        gsd_m=(30.0,) * len(ENMAP_WAVELENGTHS),
        wavelengths_nm=ENMAP_WAVELENGTHS,
        scale=10000.0,
        nodata=-32768,
        units="surface reflectance x 10000",
        product="L2A",
    ),
}


def sensor_modality(spec: str | Path, name: str | None = None) -> Modality:
    """The modality of preset ``spec`` (a key of :data:`SENSORS`) or of a sensor YAML file; renamed to ``name``."""
    if str(spec) in SENSORS:
        modality = SENSORS[str(spec)]
    elif Path(spec).suffix in (".yaml", ".yml"):
        modality = sensor_from_yaml(Path(spec))
    else:
        raise ConfigError(f"unknown sensor {str(spec)!r}: use a preset ({', '.join(SENSORS)}) or a sensor YAML file")
    return modality if name is None else replace(modality, name=name)


def sensor_from_yaml(path: Path, name: str = "image") -> Modality:
    """A modality described by a YAML file (see the module docstring); errors name the file and key."""
    import yaml

    if not path.is_file():
        raise ConfigError(f"sensor file '{path}' does not exist")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"sensor file '{path}' is not valid YAML: {exc}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("bands"), list) or not spec["bands"]:
        raise ConfigError(f"sensor file '{path}': expected a mapping with a non-empty 'bands' list")
    known = {"name", "kind", "dtype", "scale", "offset", "nodata", "units", "product", "bands"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ConfigError(f"sensor file '{path}': unknown keys {unknown} (known: {', '.join(sorted(known))})")
    bands = [_band(path, i, b) for i, b in enumerate(spec["bands"])]
    wavelengths = tuple(b["wavelength_nm"] for b in bands)
    return Modality(
        name=str(spec.get("name", name)),
        kind=spec.get("kind", "optical"),
        bands=tuple(b["name"] for b in bands),
        dtype=str(spec.get("dtype", "float32")),
        gsd_m=tuple(float(b.get("gsd_m", 10.0)) for b in bands),
        wavelengths_nm=None if any(w is None for w in wavelengths) else tuple(float(w) for w in wavelengths),
        scale=float(spec.get("scale", 1.0)),
        offset=float(spec.get("offset", 0.0)),
        nodata=spec.get("nodata"),
        units=str(spec.get("units", "")),
        product=str(spec.get("product", "")),
    )


def _band(path: Path, index: int, band: Any) -> dict[str, Any]:
    if not isinstance(band, dict) or "name" not in band:
        raise ConfigError(f"sensor file '{path}': band {index} must be a mapping with a 'name', got {band!r}")
    extra = sorted(set(band) - {"name", "wavelength_nm", "gsd_m"})
    if extra:
        raise ConfigError(f"sensor file '{path}': band {band['name']!r} has unknown keys {extra}")
    return {"wavelength_nm": None, **band}


def sentinel2_offset(product: str | None = None, when: date | None = None) -> tuple[float, str]:
    """The DN offset of a Sentinel-2 product (0 or -1000) and how it was decided.

    From the processing baseline in a product name (``..._N0400_...``) where one is given, else from the
    acquisition date (baseline 04.00 from 2022-01-25), else 0 stated as an assumption.
    """
    match = re.search(r"_N(\d{2})(\d{2})_", product or "")
    if match:
        baseline = int(match.group(1)) + int(match.group(2)) / 100
        offset = -1000.0 if baseline >= 4 else 0.0
        return offset, f"processing baseline {match.group(1)}.{match.group(2)} in the product name"
    if when is not None:
        offset = -1000.0 if when >= BASELINE_0400_DATE else 0.0
        return offset, f"acquisition date {when.isoformat()} ({'on or after' if offset else 'before'} 2022-01-25)"
    return 0.0, "no product name or date: assumed a processing baseline before 04.00 (no offset)"
