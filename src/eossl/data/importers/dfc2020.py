"""IEEE GRSS Data Fusion Contest 2020 (DFC2020; Yokoya et al. 2020): SEN12MS-style triplets with
high-resolution land-cover labels, 256 x 256 pixels at 10 m: 986 ``validation`` and 5,128 ``test``
patches.

On-disk layout (the IEEE DataPort archives ``s1_validation.zip``, ``s2_validation.zip``,
``dfc_validation.zip``, ``s1_0.zip``, ``s2_0.zip``, ``dfc_0.zip`` extracted; as the DFC2020 baseline
``lukasliebel/dfc2020_baseline`` reads them)::

    SOURCE/ROIs0000_validation/s1_validation/ROIs0000_validation_s1_0_p<n>.tif    2 bands VV, VH, float dB
    SOURCE/ROIs0000_validation/s2_validation/ROIs0000_validation_s2_0_p<n>.tif    13 bands B1..B12 (B8A), uint16
    SOURCE/ROIs0000_validation/dfc_validation/ROIs0000_validation_dfc_0_p<n>.tif  1 band, DFC classes 1..10
    SOURCE/ROIs0000_test/s1_0/ROIs0000_test_s1_0_p<n>.tif, s2_0/..., dfc_0/...

Files are found by name anywhere under ``SOURCE`` (some archives extract with a wrapping folder, others
flat); ``lc_*`` (MODIS) files and macOS ``._*`` copies are ignored.

The store holds ``s1`` (``s1-grd``, dB; the float64 files are stored as float32), ``s2`` (``s2-l1c``)
and the segmentation target ``land_cover`` (array ``[1, H, W]`` uint8, zero-based DFC classes: id =
value - 1; 0 (no data) -> 255). Savanna (3) and Snow/Ice (8) do not occur in the released labels;
``classes: dfc-8`` leaves them out (8 contiguous classes, as GFM-Bench and CROMA evaluate). Split:
the contest's ``validation`` set (labelled, released first) -> ``train``, its ``test`` set -> ``test``;
validation is carved from train by place. ``location_id``: a ``place_km`` grid cell of the patch
centre in its UTM zone, since neighbouring patches tile one scene and would otherwise leak between
train and validation (the patch itself where a file has no projected CRS). Rows also hold ``set``
(validation, test), ``patch`` and ``lat``/``lon`` of the patch centre.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from eossl.data.importers._base import IMPORTERS, Filtered, Importer, ImporterOptions, ImportItem, ImportPlan, Sample
from eossl.data.importers._sen12ms_common import (
    DFC_CLASSES,
    IGNORE,
    check_same_grid,
    lookup,
    parse_name,
    place_cell,
    probe_shape,
    read_classes,
    read_s1,
    read_s2,
)
from eossl.data.importers.raster import centre_lonlat
from eossl.data.sensors import sensor_modality, sentinel2_offset
from eossl.data.targets import Target
from eossl.errors import ImportDataError

SPLITS = {"ROIs0000_validation": "train", "ROIs0000_test": "test"}
"""DFC2020 set (the ROI part of its file names) -> store split."""
FOLDER_SUFFIX = {"ROIs0000_validation": "validation", "ROIs0000_test": "0"}
ABSENT = (3, 8)  # Savanna, Snow/Ice: not in the released labels
RELEASED = date(2020, 1, 1)  # the contest data were released in early 2020, all acquired before


class DFC2020Options(ImporterOptions):
    """Options of the DFC2020 importer."""

    classes: Literal["dfc", "dfc-8"] = Field(
        "dfc",
        description="'dfc': the 10 DFC2020 classes (Savanna and Snow/Ice declared, though absent from the "
        "labels); 'dfc-8': without them, 8 contiguous classes (any pixel of those two -> ignore)",
    )
    place_km: float = Field(
        10.0,
        ge=0,
        description="size of the grid cells (km, in the patch's UTM zone) that make one place (location_id); "
        "0: every patch is its own place",
    )


def class_table(classes: str) -> tuple[tuple[str, ...], np.ndarray]:
    """Class names and the source value -> stored id table (0 = no data -> ignore)."""
    if classes == "dfc":
        return DFC_CLASSES, lookup({0: IGNORE, **{v: v - 1 for v in range(1, 11)}})
    kept = [v for v in range(1, 11) if v not in ABSENT]
    mapping = {v: i for i, v in enumerate(kept)} | {v: IGNORE for v in ABSENT}
    return tuple(DFC_CLASSES[v - 1] for v in kept), lookup({0: IGNORE, **mapping})


def _index(source: Path) -> dict[tuple[str, str, int, int], Path]:
    """(set, kind, scene, patch) -> file, for every DFC2020 patch file under ``source``."""
    found: dict[tuple[str, str, int, int], Path] = {}
    for path in sorted(source.rglob("ROIs0000_*.tif")):
        parsed = parse_name(path.name)
        if parsed is None or parsed["roi"] not in SPLITS or parsed["kind"] not in ("s1", "s2", "dfc"):
            continue
        key = (parsed["roi"], parsed["kind"], parsed["scene"], parsed["patch"])
        if key in found:
            raise ImportDataError(f"'{path}' and '{found[key]}': the same DFC2020 patch twice (extracted twice?)")
        found[key] = path
    return found


def _partner(s2: Path, roi: str, kind: str) -> Path:
    """Where the ``kind`` file of a Sentinel-2 patch is expected when the index has none (named in errors)."""
    folder = s2.parent.parent / f"{kind}_{FOLDER_SUFFIX[roi]}"
    return folder / s2.name.replace("_s2_", f"_{kind}_")


@IMPORTERS.register("dfc2020")
class DFC2020(Importer):
    """DFC2020 -> a store with ``s1``, ``s2`` and the segmentation target ``land_cover``."""

    config = DFC2020Options

    def plan(self, source: Path, options: DFC2020Options) -> ImportPlan:
        index = _index(source) if source.is_dir() else {}
        s2 = sorted((k for k in index if k[1] == "s2"), key=lambda k: (list(SPLITS).index(k[0]), k[2], k[3]))
        if not s2:
            raise ImportDataError(
                f"'{source}': no DFC2020 Sentinel-2 patches found: expected files such as "
                "ROIs0000_validation/s2_validation/ROIs0000_validation_s2_0_p0.tif or ROIs0000_test/s2_0/..."
            )
        items = []
        for roi, _, scene, patch in s2:
            s2_path = index[(roi, "s2", scene, patch)]
            files = tuple(
                index.get((roi, kind, scene, patch)) or _partner(s2_path, roi, kind) for kind in ("s1", "dfc")
            )
            info = {"split": SPLITS[roi], "set": roi.split("_")[1], "scene": scene, "patch": patch}
            items.append(ImportItem(f"{roi}_{scene}_p{patch}", (files[0], s2_path, files[1]), info))
        if not any(i.info["split"] == "train" for i in items):
            raise ImportDataError(f"'{source}': no ROIs0000_validation patches (the labelled set that becomes train)")
        names, _ = class_table(options.classes)
        offset, why = sentinel2_offset(when=RELEASED)
        counts = {s: sum(i.info["split"] == s for i in items) for s in ("train", "test")}
        notes = [
            f"split: DFC2020 validation -> train ({counts['train']} patches), test -> test ({counts['test']}); "
            "val is carved from train by place",
            f"land_cover: DFC classes zero-based (id = value - 1), no data 0 -> {IGNORE}; scheme {options.classes} "
            f"({len(names)} classes)" + ("; Savanna and Snow/Ice -> ignore" if options.classes == "dfc-8" else ""),
            f"Sentinel-2 L1C, 13 bands; acquired before the 2020 release, {why}: offset {offset:g}",
            "Sentinel-1 backscatter in dB as shipped (float64 files stored as float32); NaN kept",
            f"location_id: {options.place_km:g} km grid cells of the patch centres in their UTM zone"
            if options.place_km
            else "location_id: every patch is its own place",
        ]
        return ImportPlan(
            modalities={"s1": sensor_modality("s1-grd"), "s2": sensor_modality("s2-l1c")},
            items=items,
            extra_arrays={"land_cover": (probe_shape([i.files[2] for i in items[:20]], "DFC2020 label"), "uint8")},
            targets=[
                Target(
                    "land_cover",
                    "segmentation",
                    array="land_cover",
                    class_names=names,
                    ignore_index=IGNORE,
                    description="DFC2020 high-resolution land cover (simplified IGBP scheme)",
                )
            ],
            split="split",
            notes=notes,
        )

    def read(self, item: ImportItem, options: DFC2020Options) -> list[Sample | Filtered]:
        s1_path, s2_path, dfc_path = item.files
        _, table = class_table(options.classes)
        s1, s2 = read_s1(s1_path), read_s2(s2_path)
        ids = read_classes(dfc_path, table, bands=1, what="DFC2020 land cover classes 0..10")
        check_same_grid({s1_path: s1, s2_path: s2, dfc_path: ids})
        lat, lon = centre_lonlat(s2_path)
        cell = place_cell(s2_path, options.place_km)
        row = {
            "location_id": cell or item.key,
            "split": item.info["split"],
            "set": item.info["set"],
            "patch": item.info["patch"],
            "lat": lat,
            "lon": lon,
        }
        return [Sample(item.key, {"s1": s1, "s2": s2, "land_cover": ids}, row)]
