"""The BigEarthNet nomenclature: the 43 CORINE classes of v1, the 19 classes of BigEarthNet-19 (and
v2 / reBEN), the mapping between them, and labels as the json files and metadata tables give them."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from eossl.errors import ImportDataError

CLASSES_43 = (
    "Continuous urban fabric", "Discontinuous urban fabric", "Industrial or commercial units",
    "Road and rail networks and associated land", "Port areas", "Airports", "Mineral extraction sites",
    "Dump sites", "Construction sites", "Green urban areas", "Sport and leisure facilities",
    "Non-irrigated arable land", "Permanently irrigated land", "Rice fields", "Vineyards",
    "Fruit trees and berry plantations", "Olive groves", "Pastures", "Annual crops associated with permanent crops",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas", "Broad-leaved forest", "Coniferous forest", "Mixed forest", "Natural grassland",
    "Moors and heathland", "Sclerophyllous vegetation", "Transitional woodland/shrub", "Beaches, dunes, sands",
    "Bare rock", "Sparsely vegetated areas", "Burnt areas", "Inland marshes", "Peatbogs", "Salt marshes", "Salines",
    "Intertidal flats", "Water courses", "Water bodies", "Coastal lagoons", "Estuaries", "Sea and ocean",
)  # fmt: skip
CLASSES_19 = (
    "Urban fabric", "Industrial or commercial units", "Arable land", "Permanent crops", "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas", "Broad-leaved forest", "Coniferous forest", "Mixed forest",
    "Natural grassland and sparsely vegetated areas", "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland, shrub", "Beaches, dunes, sands", "Inland wetlands", "Coastal wetlands", "Inland waters",
    "Marine waters",
)  # fmt: skip
TO_19 = {0: 0, 1: 0, 2: 1, 11: 2, 12: 2, 13: 2, 14: 3, 15: 3, 16: 3, 18: 3, 17: 4, 19: 5, 20: 6, 21: 7, 22: 8,
         23: 9, 24: 10, 25: 11, 31: 11, 26: 12, 27: 12, 28: 13, 29: 14, 33: 15, 34: 15, 35: 16, 36: 16, 38: 17,
         39: 17, 40: 18, 41: 18, 42: 18}  # fmt: skip
"""43-class index -> 19-class index (BigEarthNet-19 ``label_indices.json``, TorchGeo's ``label_converter``);
the 11 classes not listed (roads, ports, airports, mines, dumps, construction, green urban, sport, bare
rock, burnt areas, intertidal flats) have no 19-class counterpart."""


def label_vector(names: Any, classes: int, where: str) -> np.ndarray:
    """0/1 per class from 43-class names (or 19-class names, as v2 gives them)."""
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
        raise ImportDataError(f"{where}: 'labels' must be a non-empty list of CORINE class names, got {names!r}")
    out = np.zeros(classes, np.uint8)
    for name in names:
        if name in CLASSES_43:
            index = CLASSES_43.index(name) if classes == 43 else TO_19.get(CLASSES_43.index(name))
        elif name in CLASSES_19 and classes == 19:
            index = CLASSES_19.index(name)
        else:
            raise ImportDataError(f"{where}: unknown label {name!r} (not one of the {classes} BigEarthNet classes)")
        if index is not None:
            out[index] = 1
    return out


def v2_labels(value: Any) -> list[str]:
    """reBEN labels: a list (parquet), or its text in a CSV (``['A', 'B']``, numpy's ``['A' 'B']``, ``A;B``)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v) for v in value]
    text = str(value).strip()
    if text.startswith("["):
        return [a or b for a, b in re.findall(r"'([^']*)'|\"([^\"]*)\"", text)]
    return [part.strip() for part in re.split(r"[;|]", text) if part.strip()]
