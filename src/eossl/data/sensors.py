"""Sensor presets: band names, centre wavelengths, GSD, units and the stored-value conventions of the
sensors EO users have, so an importer gets a correct :class:`~eossl.data.modality.Modality` by name.

Presets (``SENSORS``): ``s2-l1c`` (13 bands, top-of-atmosphere reflectance x 10000), ``s2-l2a`` (12
bands, surface reflectance x 10000; B10 is not in L2A products), ``s1-grd`` (VV, VH backscatter in dB),
``s1-grd-linear`` (the same in linear power), ``landsat-oli-l2`` (Landsat 8/9 Collection 2 Level-2
surface reflectance SR_B1..SR_B7: reflectance = DN x 0.0000275 - 0.2), ``landsat-oli-l1`` (Level-1
B1..B7 and B9 top-of-atmosphere reflectance: DN x 0.00002 - 0.1) and ``enmap-l2a`` (224 bands,
418-2445 nm, reflectance x 10000; DLR's nominal centre wavelengths, which an importer replaces by
the product's own where it has them).

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

from eossl.data.modality import S2_BANDS, S2_GSD, S2_WAVELENGTHS, SENTINEL1_GRD, SENTINEL2_L2A, Modality
from eossl.errors import ConfigError

S2_L1C_BANDS = (*S2_BANDS[:10], "B10", *S2_BANDS[10:])
S2_L1C_WAVELENGTHS = (*S2_WAVELENGTHS[:10], 1375.0, *S2_WAVELENGTHS[10:])
S2_L1C_GSD = (*S2_GSD[:10], 60.0, *S2_GSD[10:])
BASELINE_0400_DATE = date(2022, 1, 25)
"""First acquisitions processed with Sentinel-2 processing baseline 04.00 (offset -1000)."""


# fmt: off
ENMAP_NOMINAL_NM: tuple[float, ...] = (
    418.4, 424.0, 429.5, 434.7, 439.8, 444.7, 449.5, 454.3, 459.0, 463.7, 468.4, 473.1, 477.7, 482.4, 487.1,
    491.8, 496.5, 501.2, 506.0, 510.8, 515.7, 520.6, 525.5, 530.4, 535.4, 540.5, 545.6, 550.7, 555.9, 561.1,
    566.4, 571.8, 577.2, 582.6, 588.2, 593.8, 599.4, 605.2, 611.0, 616.9, 622.9, 629.0, 635.1, 641.3, 647.5,
    653.8, 660.2, 666.6, 673.1, 679.7, 686.3, 693.0, 699.8, 706.6, 713.5, 720.5, 727.5, 734.7, 741.8, 749.1,
    756.4, 763.7, 771.1, 778.6, 786.1, 793.6, 801.2, 808.9, 816.6, 824.4, 832.1, 840.0, 847.8, 855.8, 863.7,
    871.7, 879.7, 887.7, 895.8, 903.9, 912.0, 920.1, 928.2, 936.3, 944.5, 952.6, 960.7, 968.9, 977.0, 985.2,
    993.3, 902.0, 911.6, 921.3, 931.2, 941.2, 951.4, 961.6, 972.0, 982.5, 993.1, 1003.9, 1014.7, 1025.7, 1036.7,
    1047.8, 1059.1, 1070.4, 1081.8, 1093.3, 1104.8, 1116.4, 1128.1, 1139.8, 1151.6, 1163.4, 1175.3, 1187.2,
    1199.1, 1211.0, 1223.0, 1235.0, 1246.9, 1258.9, 1270.9, 1282.9, 1294.9, 1306.9, 1318.9, 1330.9, 1342.8,
    1354.8, 1366.7, 1378.6, 1390.5, 1461.1, 1472.7, 1484.3, 1495.9, 1507.4, 1518.9, 1530.3, 1541.7, 1553.0,
    1564.3, 1575.5, 1586.8, 1597.9, 1609.0, 1620.1, 1631.1, 1642.1, 1653.0, 1663.9, 1674.7, 1685.5, 1696.2,
    1706.9, 1717.5, 1728.1, 1738.6, 1749.1, 1759.5, 1939.1, 1948.7, 1958.2, 1967.7, 1977.1, 1986.5, 1995.8,
    2005.1, 2014.3, 2023.5, 2032.7, 2041.8, 2050.9, 2060.0, 2069.0, 2077.9, 2086.9, 2095.7, 2104.6, 2113.4,
    2122.2, 2130.9, 2139.6, 2148.3, 2156.9, 2165.5, 2174.0, 2182.5, 2191.0, 2199.5, 2207.9, 2216.2, 2224.6,
    2232.9, 2241.2, 2249.4, 2257.6, 2265.8, 2273.9, 2282.0, 2290.1, 2298.2, 2306.2, 2314.2, 2322.1, 2330.1,
    2337.9, 2345.8, 2353.6, 2361.4, 2369.2, 2376.9, 2384.7, 2392.3, 2400.0, 2407.6, 2415.2, 2422.8, 2430.3,
    2437.8, 2445.3
)
# fmt: on
"""DLR's nominal EnMAP band centres (nm): bands 1-91 VNIR, 92-224 SWIR. Products list their own in METADATA.XML."""
ENMAP_WAVELENGTHS = ENMAP_NOMINAL_NM

# fmt: off
SENSORS: dict[str, Modality] = {
    "s2-l1c": replace(
        SENTINEL2_L2A, bands=S2_L1C_BANDS, gsd_m=S2_L1C_GSD, wavelengths_nm=S2_L1C_WAVELENGTHS,
        units="TOA reflectance x 10000", product="L1C",
    ),
    "s2-l2a": SENTINEL2_L2A,
    "s1-grd": SENTINEL1_GRD,
    "s1-grd-linear": replace(SENTINEL1_GRD, units="linear power"),
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
# fmt: on


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
