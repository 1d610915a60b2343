"""SEN12MS (Schmitt et al. 2019): 180,662 co-registered triplets of Sentinel-1 GRD, Sentinel-2 L1C and
MODIS land cover, 256 x 256 pixels at 10 m, from scenes all over the world in four seasons.

On-disk layout (the ``ROIs<nnnn>_<season>_<kind>.tar.gz`` archives extracted, as TorchGeo's ``SEN12MS``
reads them; ``SOURCE`` may also be the folder above ``sen12ms/``)::

    SOURCE/ROIs1158_spring/s1_<scene>/ROIs1158_spring_s1_<scene>_p<patch>.tif   2 bands VV, VH, float32 dB
    SOURCE/ROIs1158_spring/s2_<scene>/ROIs1158_spring_s2_<scene>_p<patch>.tif   13 bands B1..B12 (B8A), uint16
    SOURCE/ROIs1158_spring/lc_<scene>/ROIs1158_spring_lc_<scene>_p<patch>.tif   4 bands IGBP, LCCS-LC, LCCS-LU, LCCS-SH
    ... ROIs1868_summer, ROIs1970_fall, ROIs2017_winter
    SOURCE/train_list.txt, test_list.txt          (optional, also under SOURCE/splits/ or next to SOURCE)
    SOURCE/SEN12MS_holdOutScenes.txt              (optional: hold-out scene folders, ``ROIs1158_spring/s1_63``)

The split files come from the SEN12MS toolbox (github.com/schmitt-muc/SEN12MS, ``splits/``): the lists
name Sentinel-2 (or -1) patch files; ``test_list`` holds the patches of the hold-out scenes and
``train_list`` the others, less one damaged triplet (``ROIs1868_summer_s1_146_p202``).

The store holds ``s1`` (``s1-grd``, dB as shipped, NaN kept), ``s2`` (``s2-l1c``), the segmentation
target ``igbp`` (array ``[1, H, W]`` uint8: the IGBP band of the land-cover file, zero-based, in the 17
IGBP classes or, with ``classes: simplified``, the 10 DFC2020 classes; 255 = no label) and the
single-label ``igbp_majority`` (the most frequent class of the map, 255 where no pixel is labelled).
Rows: ``location_id`` = ``<ROI>_<scene>`` (patches of a scene are neighbours, so a scene is one place
and goes to one split), ``season``, ``scene``, ``patch``, ``lat``/``lon`` of the patch centre and, where
split files are found, ``split`` (train/test; validation is carved from train by scene).
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from eossl.data.importers._base import IMPORTERS, Filtered, Importer, ImporterOptions, ImportItem, ImportPlan, Sample
from eossl.data.importers._sen12ms_common import (
    DFC_CLASSES,
    IGBP_CLASSES,
    IGBP_TO_DFC,
    IGNORE,
    check_same_grid,
    lookup,
    majority,
    parse_name,
    probe_shape,
    read_classes,
    read_s1,
    read_s2,
)
from eossl.data.importers._text import read_text
from eossl.data.importers.raster import centre_lonlat
from eossl.data.sensors import sensor_modality, sentinel2_offset
from eossl.data.targets import Target
from eossl.errors import ImportDataError

SEASON_FOLDER = re.compile(r"^ROIs\d+_(spring|summer|fall|winter)$")
LIST_FILES = {"train": "train_list.txt", "test": "test_list.txt"}
HOLDOUT_FILE = "SEN12MS_holdOutScenes.txt"
LC_BANDS = "IGBP, LCCS-LC, LCCS-LU, LCCS-SH"
LAST_ACQUISITION = date(2017, 11, 30)  # SEN12MS scenes: winter 2016/17 to fall 2017


class SEN12MSOptions(ImporterOptions):
    """Options of the SEN12MS importer."""

    classes: Literal["igbp", "simplified"] = Field(
        "igbp",
        description="class scheme of the 'igbp' target: the 17 IGBP classes, or the simplified 10-class "
        "DFC2020 scheme (IGBP forests, shrublands, savannas merged; croplands with mosaics)",
    )
    split: Literal["auto", "lists", "scenes", "none"] = Field(
        "auto",
        description="official split: 'lists' from train_list.txt/test_list.txt (unlisted patches left out), "
        "'scenes' from SEN12MS_holdOutScenes.txt (hold-out scenes -> test, the rest -> train), 'none' "
        "(split by scene later); 'auto': lists if found, else the hold-out scenes file, else none",
    )


def _root(source: Path) -> Path:
    """The folder holding the season folders (``ROIs1158_spring``, ...)."""
    for candidate in (source, source / "sen12ms", source / "SEN12MS"):
        if candidate.is_dir() and any(SEASON_FOLDER.match(p.name) for p in candidate.iterdir() if p.is_dir()):
            return candidate
    found = sorted(p.name for p in source.iterdir()) if source.is_dir() else []
    raise ImportDataError(
        f"'{source}': not a SEN12MS folder: expected season folders ROIs1158_spring, ROIs1868_summer, "
        f"ROIs1970_fall, ROIs2017_winter (each with s1_<scene>/, s2_<scene>/, lc_<scene>/), found {found[:10]}"
    )


def _find(source: Path, root: Path, name: str) -> Path | None:
    for folder in (root, source, source / "splits", root / "splits", source.parent):
        if (folder / name).is_file():
            return folder / name
    return None


def _list_split(source: Path, root: Path) -> tuple[dict[tuple[str, int, int], str], list[Path]]:
    """(ROI, scene, patch) -> split from the list files (empty when none is found), and the files read."""
    split: dict[tuple[str, int, int], str] = {}
    origin: dict[tuple[str, int, int], Path] = {}
    used = []
    for name, file in LIST_FILES.items():
        path = _find(source, root, file)
        if path is None:
            continue
        used.append(path)
        for line in read_text(path, "SEN12MS split list (one patch file name per line)").split():
            parsed = parse_name(Path(line).name)
            if parsed is None or parsed["kind"] not in ("s1", "s2", "lc"):
                raise ImportDataError(
                    f"'{path}': expected SEN12MS patch file names (ROIs1158_spring_s2_1_p30.tif), got {line!r}"
                )
            key = (parsed["roi"], parsed["scene"], parsed["patch"])
            if key in split and split[key] != name:
                raise ImportDataError(
                    f"'{path}' and '{origin[key]}' both list patch {line!r}; the splits must be disjoint"
                )
            split[key], origin[key] = name, path
    return split, used


def _scene_split(source: Path, root: Path) -> tuple[set[tuple[str, int]], Path | None]:
    """(ROI, scene) of the hold-out scenes, from ``SEN12MS_holdOutScenes.txt`` (``ROIs1158_spring/s1_63``)."""
    path = _find(source, root, HOLDOUT_FILE)
    if path is None:
        return set(), None
    scenes = set()
    for line in read_text(path, "SEN12MS list of hold-out scene folders").split():
        match = re.fullmatch(r"(ROIs\d+_[a-z]+)/(?:s1|s2|lc)_(\d+)", line.strip("/"))
        if match is None:
            raise ImportDataError(f"'{path}': expected scene folders such as 'ROIs1158_spring/s1_63', got {line!r}")
        scenes.add((match[1], int(match[2])))
    return scenes, path


def _patches(root: Path) -> list[dict]:
    """Every Sentinel-2 patch of the season folders, in (season folder, scene, patch) order."""
    found = []
    for season in sorted(p for p in root.iterdir() if p.is_dir() and SEASON_FOLDER.match(p.name)):
        scenes = [p for p in season.iterdir() if p.is_dir() and re.fullmatch(r"s2_\d+", p.name)]
        for scene in sorted(scenes, key=lambda p: int(p.name[3:])):
            with os.scandir(scene) as entries:
                names = [e.name for e in entries if e.is_file()]
            parsed = [parse_name(n) for n in names]
            patches = [p for p in parsed if p and p["kind"] == "s2" and p["roi"] == season.name]
            for p in sorted(patches, key=lambda p: p["patch"]):
                found.append({**p, "season": SEASON_FOLDER.match(season.name)[1], "folder": season})
    return found


def _files(patch: dict) -> tuple[Path, Path, Path]:
    """The s1, s2 and lc files of one patch (by the naming rule; they may be missing)."""
    roi, scene, n = patch["roi"], patch["scene"], patch["patch"]
    return tuple(patch["folder"] / f"{kind}_{scene}" / f"{roi}_{kind}_{scene}_p{n}.tif" for kind in ("s1", "s2", "lc"))


def class_table(classes: str) -> tuple[tuple[str, ...], np.ndarray]:
    """Class names and the source value -> stored id table of a scheme (0 and 255 are fill: no label)."""
    if classes == "igbp":
        mapping = {v: v - 1 for v in range(1, 18)}
        names = IGBP_CLASSES
    else:
        mapping = {v: IGBP_TO_DFC[v] - 1 for v in range(1, 18)}
        names = DFC_CLASSES
    return names, lookup({**mapping, 0: IGNORE, 255: IGNORE})


@IMPORTERS.register("sen12ms")
class SEN12MS(Importer):
    """SEN12MS -> a store with ``s1``, ``s2``, the segmentation target ``igbp`` and ``igbp_majority``."""

    config = SEN12MSOptions

    def plan(self, source: Path, options: SEN12MSOptions) -> ImportPlan:
        root = _root(source)
        patches = _patches(root)
        notes = []
        lists, used = ({}, []) if options.split in ("scenes", "none") else _list_split(source, root)
        holdout, holdout_file = (
            (set(), None) if options.split in ("lists", "none") or lists else _scene_split(source, root)
        )
        if options.split == "lists" and not lists:
            raise ImportDataError(f"'{source}': split=lists but neither {' nor '.join(LIST_FILES.values())} was found")
        if options.split == "scenes" and holdout_file is None:
            raise ImportDataError(f"'{source}': split=scenes but {HOLDOUT_FILE} was not found")
        items, unlisted = [], 0
        for patch in patches:
            key = (patch["roi"], patch["scene"], patch["patch"])
            split = None
            if lists:
                split = lists.get(key)
                if split is None:
                    unlisted += 1
                    continue
            elif holdout_file is not None:
                split = "test" if key[:2] in holdout else "train"
            info = {k: patch[k] for k in ("roi", "season", "scene", "patch")} | {"split": split}
            items.append(ImportItem(f"{patch['roi']}_{patch['scene']}_p{patch['patch']}", _files(patch), info))
        has_split = bool(lists) or holdout_file is not None
        if lists and patches and not items:
            shown = ", ".join(f"'{p}'" for p in used)
            raise ImportDataError(f"'{source}': the split files {shown} list none of its {len(patches)} patches")
        if has_split and items and not any(i.info["split"] == "train" for i in items):
            shown = ", ".join(f"'{p}'" for p in (used or [holdout_file]))
            raise ImportDataError(f"'{source}': the split files {shown} put none of its {len(items)} patches in train")
        if lists:
            notes.append(f"official split from {', '.join(str(p) for p in used)}; {unlisted} unlisted patches left out")
        elif holdout_file is not None:
            notes.append(f"official split from {holdout_file}: hold-out scenes -> test, other scenes -> train")
        else:
            notes.append("no split files found: split by scene (location_id) when the store is used")
        names, _ = class_table(options.classes)
        offset, why = sentinel2_offset(when=LAST_ACQUISITION)
        notes += [
            f"Sentinel-2 L1C, 13 bands; SEN12MS acquisitions are from 2016-2017, {why}: offset {offset:g}",
            "Sentinel-1 backscatter in dB as shipped (float32); NaN pixels kept",
            f"igbp: IGBP band of the land-cover file, {options.classes} scheme ({len(names)} classes), "
            f"zero-based (id = value - 1), fill values 0 and 255 -> {IGNORE} (no label)",
            "location_id = <ROI>_<scene>: the patches of a scene are neighbours, so a scene is one place",
        ]
        return ImportPlan(
            modalities={"s1": sensor_modality("s1-grd"), "s2": sensor_modality("s2-l1c")},
            items=items,
            extra_arrays={"igbp": (probe_shape([i.files[2] for i in items[:20]], "SEN12MS land-cover"), "uint8")}
            if items
            else {},
            targets=[
                Target(
                    "igbp",
                    "segmentation",
                    array="igbp",
                    class_names=names,
                    ignore_index=IGNORE,
                    strata="igbp_majority",
                    description=f"MODIS land cover (IGBP band, {options.classes} scheme) at 500 m, resampled to 10 m",
                ),
                Target(
                    "igbp_majority",
                    "single-label",
                    column="igbp_majority",
                    class_names=names,
                    ignore_index=IGNORE,
                    description="most frequent class of the igbp map",
                ),
            ],
            split="split" if has_split else None,
            notes=notes,
        )

    def read(self, item: ImportItem, options: SEN12MSOptions) -> list[Sample | Filtered]:
        s1_path, s2_path, lc_path = item.files
        _, table = class_table(options.classes)
        s1, s2 = read_s1(s1_path), read_s2(s2_path)
        ids = read_classes(lc_path, table, bands=4, what=LC_BANDS)
        check_same_grid({s1_path: s1, s2_path: s2, lc_path: ids})
        lat, lon = centre_lonlat(s2_path)
        info = item.info
        row = {
            "location_id": f"{info['roi']}_{info['scene']}",
            "season": info["season"],
            "scene": info["scene"],
            "patch": info["patch"],
            "lat": lat,
            "lon": lon,
            "igbp_majority": majority(ids),
        }
        if info["split"] is not None:
            row["split"] = info["split"]
        return [Sample(item.key, {"s1": s1, "s2": s2, "igbp": ids}, row)]
