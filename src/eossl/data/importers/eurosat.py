"""EuroSAT (Helber et al. 2019), multispectral version: 27,000 Sentinel-2 L1C patches of 64 x 64 pixels
at 10 m, 13 bands, in ten land-use classes.

On-disk layout (the ``EuroSATallBands.zip`` archive, as TorchGeo's ``EuroSAT`` reads it)::

    SOURCE/ds/images/remote_sensing/otherDatasets/sentinel_2/tif/<Class>/<Class>_<n>.tif
    SOURCE/eurosat-train.txt, eurosat-val.txt, eurosat-test.txt   (optional: the split TorchGeo uses)

``SOURCE`` may also be any folder above the class folders (``.../tif``). Each GeoTIFF is uint16,
13 bands in the order B01..B12 with B8A after B08 and B10 included (L1C), in a UTM CRS. The split
files list one file name per line (``AnnualCrop_1.jpg``: the RGB names, matched by stem); without
them the store is split by place (every patch is its own place).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eossl.data.importers._base import IMPORTERS, Filtered, Importer, ImporterOptions, ImportItem, ImportPlan, Sample
from eossl.data.importers._text import read_text
from eossl.data.importers.raster import centre_lonlat, read_raster
from eossl.data.sensors import sensor_modality
from eossl.data.targets import Target
from eossl.errors import ImportDataError

CLASSES = (
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
)
SPLIT_FILES = {"train": "eurosat-train.txt", "val": "eurosat-val.txt", "test": "eurosat-test.txt"}


class EuroSATOptions(ImporterOptions):
    """EuroSAT has no options of its own."""


def _class_root(source: Path) -> Path:
    """The folder holding the class folders."""
    for candidate in (source, source / "ds/images/remote_sensing/otherDatasets/sentinel_2/tif", source / "tif"):
        if all((candidate / c).is_dir() for c in CLASSES):
            return candidate
    found = sorted(p.name for p in source.iterdir() if p.is_dir()) if source.is_dir() else []
    raise ImportDataError(
        f"'{source}': not a EuroSAT MS folder: expected the class folders {', '.join(CLASSES)} "
        f"(under ds/images/remote_sensing/otherDatasets/sentinel_2/tif/), found {found[:10]}"
    )


def _official_split(source: Path) -> tuple[dict[str, str], list[Path]]:
    """File stem -> split, from the split files next to the data (empty if there are none), and the files."""
    split: dict[str, str] = {}
    used = []
    for name, file in SPLIT_FILES.items():
        for root in (source, source.parent):
            if (root / file).is_file():
                used.append(root / file)
                for line in read_text(root / file, "EuroSAT split list (one file name per line)").split():
                    split[Path(line).stem] = name
                break
    return split, used


@IMPORTERS.register("eurosat")
class EuroSAT(Importer):
    """EuroSAT MS -> a store with ``s2`` (13 L1C bands) and the single-label target ``land_use``."""

    config = EuroSATOptions

    def plan(self, source: Path, options: EuroSATOptions) -> ImportPlan:
        root = _class_root(source)
        split, split_files = _official_split(source)
        items = []
        for label, name in enumerate(CLASSES):
            for path in sorted((root / name).glob("*.tif"), key=lambda p: (len(p.stem), p.stem)):
                info = {"label": label, "split": split.get(path.stem, "unlisted") if split else None}
                items.append(ImportItem(path.stem, (path,), info))
        if split:
            listed = [i for i in items if i.info["split"] != "unlisted"]
            if items and not listed:
                shown = ", ".join(f"'{p}'" for p in split_files)
                raise ImportDataError(f"the split files {shown} list none of the {len(items)} patches under '{root}'")
            items = listed
        notes = ["Sentinel-2 L1C, 13 bands; EuroSAT products predate processing baseline 04.00: offset 0"]
        return ImportPlan(
            modalities={"s2": sensor_modality("s2-l1c")},
            items=items,
            targets=[Target("land_use", "single-label", column="land_use", class_names=CLASSES)],
            split="split" if split else None,
            notes=notes + ([f"official split from {', '.join(SPLIT_FILES.values())}"] if split else []),
        )

    def read(self, item: ImportItem, options: EuroSATOptions) -> list[Sample | Filtered]:
        (path,) = item.files
        values = read_raster(path)
        if values.shape[0] != 13:
            raise ImportDataError(f"'{path}': expected 13 bands (B01..B12, B8A), found {values.shape[0]}")
        integer = np.issubdtype(values.dtype, np.integer)
        if values.dtype != np.uint16 and not (integer and values.min() >= 0 and values.max() <= 65535):
            raise ImportDataError(f"'{path}': expected uint16 reflectance x 10000, found dtype {values.dtype}")
        values = values.astype(np.uint16)
        lat, lon = centre_lonlat(path)
        row = {"location_id": item.key, "land_use": item.info["label"], "lat": lat, "lon": lon}
        if item.info["split"] is not None:
            row["split"] = item.info["split"]
        return [Sample(item.key, {"s2": values}, row)]
