"""BigEarthNet (Sumbul et al. 2019; v2.0 "reBEN", Clasen et al. 2025): Sentinel-2 L2A and Sentinel-1
GRD patches of 1.2 x 1.2 km over ten European countries (June 2017 - May 2018), multi-labelled with
CORINE Land Cover 2018 classes (43 classes, or the 19-class nomenclature of BigEarthNet-19).

v1.0 layout (``BigEarthNet-S2-v1.0.tar.gz`` unpacks to ``BigEarthNet-v1.0/``; checked against the real
patches in ``shared/data/bigearthnet-example`` and TorchGeo's ``BigEarthNet``)::

    SOURCE/BigEarthNet-v1.0/<s2>/<s2>_B01.tif .. _B12.tif, _B8A.tif   uint16, no B10: 120x120 at 10 m
        (B02-B04, B08), 60x60 at 20 m (B05-B07, B8A, B11, B12), 20x20 at 60 m (B01, B09), UTM
    SOURCE/BigEarthNet-v1.0/<s2>/<s2>_labels_metadata.json   labels (43-class names), coordinates
        {ulx, uly, lrx, lry}, projection (WKT), tile_source (the L1C product), acquisition_date
    SOURCE/BigEarthNet-S1-v1.0/<s1>/<s1>_VV.tif, _VH.tif      float32 dB, 120x120 at 10 m
    SOURCE/BigEarthNet-S1-v1.0/<s1>/<s1>_labels_metadata.json labels, coordinates {ulx, uly, lrx, lly},
        projection, corresponding_s2_patch, scene_source, acquisition_time
    SOURCE/train.csv, val.csv, test.csv    (optional) one S2 name per line (BigEarthNet-MM: "s2,s1")
    SOURCE/patches_with_seasonal_snow.csv, patches_with_cloud_and_shadow.csv   (optional) S2 names

``s2_root``/``s1_root`` default to ``BigEarthNet-v1.0`` or the one ``BigEarthNet-S2*`` folder and the one
``BigEarthNet-S1*`` folder under SOURCE. v2.0 (reBEN): ``BigEarthNet-S2/<tile>/<patch>/<patch>_B01.tif``,
``BigEarthNet-S1/<product>/<patch>/<patch>_VV.tif`` and ``SOURCE/metadata.parquet`` (needs pyarrow) or
``metadata.csv`` with patch_id, labels (19-class names), split, country, s1_name,
contains_seasonal_snow, contains_cloud_or_shadow.

The store holds ``s2`` (s2-l2a, 12 bands on the 10 m grid, 20 m and 60 m bands resampled bilinearly),
``s1`` (s1-grd, VV, VH) of the same place in the same row (paired by the S1 json's
``corresponding_s2_patch``; v2: ``s1_name``), the multi-label target ``labels`` (``[N, 19]`` or
``[N, 43]``) and rows with ``location_id`` (the S2 patch name), ``lat``/``lon`` (patch centre), ``time``
(S2 acquisition date), ``tile``, ``s1_patch``, ``s1_time``, ``split`` where the official split exists.
Patches listed with snow or clouds (and, with split files, patches in none) are left out and counted in
the notes; 19-class patches without any 19-class label are filtered (``keep_unmapped`` keeps them);
an S1 patch without S2 partner, or an S2 patch without S1 one, is a bad item (raise, or skip and count).
Item files are the patch jsons (16 band paths per item would not fit memory for 590k patches), so the
import report's MB/s counts those.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from eossl.data.importers._base import IMPORTERS, Filtered, Importer, ImporterOptions, ImportItem, ImportPlan, Sample
from eossl.data.importers._bigearthnet_classes import CLASSES_19, CLASSES_43, label_vector
from eossl.data.importers._bigearthnet_files import S2_FACTOR, S2_FILES, read_s1, read_s2  # noqa: F401  (layout)
from eossl.data.importers._bigearthnet_files import day as _day
from eossl.data.importers._bigearthnet_files import tile as _tile
from eossl.data.importers._bigearthnet_v2 import meta_v2, plan_v2
from eossl.data.importers._text import read_text
from eossl.data.sensors import SENSORS, sentinel2_offset
from eossl.data.targets import Target
from eossl.errors import ImportDataError

SPLIT_FILES = {s: (f"{s}.csv", f"bigearthnet-{s}.csv") for s in ("train", "val", "test")}
EXCLUDE_FILES = {
    "seasonal snow": "patches_with_seasonal_snow.csv",
    "cloud and shadow": "patches_with_cloud_and_shadow.csv",
}
V2_EXCLUDE = {"seasonal snow": "contains_seasonal_snow", "cloud and shadow": "contains_cloud_or_shadow"}
UNMAPPED = "no label in the 19-class nomenclature"
DESCRIPTION = "CORINE Land Cover 2018 multi-labels (BigEarthNet)"


class BigEarthNetOptions(ImporterOptions):
    """Options of the BigEarthNet importer."""

    version: Literal["auto", "v1", "v2"] = Field("auto", description="v1.0 json layout, v2.0 (reBEN) metadata table")
    classes: Literal[19, 43] = Field(19, description="19-class nomenclature or the 43 CORINE classes (v1 only)")
    modalities: list[Literal["s2", "s1"]] | None = Field(None, description="default: s2 and s1 when S1 is there")
    exclude_snow_cloud: bool = Field(True, description="leave out patches listed with seasonal snow or clouds")
    keep_unmapped: bool = Field(False, description="keep patches without 19-class label (all-zero), else filtered")
    s2_root: Path | None = Field(None, description="S2 patch folder (relative to SOURCE); default found")
    s1_root: Path | None = Field(None, description="S1 patch folder (relative to SOURCE); default found")
    s2_offset: float | None = Field(None, description="S2 DN offset; default from product name/acquisition date")

    @field_validator("modalities", mode="before")
    @classmethod
    def _one_name(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ImportDataError(f"'{path}': file does not exist (each patch folder holds <patch>_labels_metadata.json)")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ImportDataError(f"'{path}': not valid JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise ImportDataError(f"'{path}': expected a JSON object, got {type(payload).__name__}")
    return payload


def _centre(meta: dict[str, Any], where: str) -> tuple[float, float]:
    """(lat, lon) of the patch centre from json ``coordinates`` (lry, or lly in S1 files) and ``projection``."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError
    from rasterio.warp import transform

    coords = meta.get("coordinates")
    bottom = "lry" if isinstance(coords, dict) and "lry" in coords else "lly"
    try:
        x = (float(coords["ulx"]) + float(coords["lrx"])) / 2
        y = (float(coords["uly"]) + float(coords[bottom])) / 2
        crs = CRS.from_wkt(meta["projection"])
    except (KeyError, TypeError, ValueError, CRSError) as exc:
        raise ImportDataError(
            f"{where}: expected 'coordinates' {{ulx, uly, lrx, lry}} and a WKT 'projection' ({exc!r})"
        ) from None
    lon, lat = transform(crs, "EPSG:4326", [x], [y])
    return float(lat[0]), float(lon[0])


def _find_root(source: Path, given: Path | None, defaults: tuple[str, ...], what: str) -> Path | None:
    if given is not None:
        root = given if given.is_absolute() else source / given
        if not root.is_dir():
            raise ImportDataError(f"'{root}': the {what} folder given does not exist")
        return root
    found = [source / n for n in defaults if (source / n).is_dir()]
    found = found or sorted(p for p in source.glob(f"BigEarthNet-{what}*") if p.is_dir())
    if len(found) > 1:
        raise ImportDataError(f"'{source}': several {what} folders {[p.name for p in found]}: set {what.lower()}_root")
    return found[0] if found else None


def _subdirs(root: Path) -> list[str]:
    with os.scandir(root) as entries:
        return sorted(e.name for e in entries if e.is_dir())


def _name_list(path: Path) -> list[str]:
    """First field of each line of a BigEarthNet list file (split, snow, cloud)."""
    text = read_text(path, "list of BigEarthNet patch names")
    return [line.split(",")[0].strip() for line in text.splitlines() if line.strip()]


def _official_split(source: Path) -> tuple[dict[str, str], list[str]]:
    split: dict[str, str] = {}
    used = []
    for name, files in SPLIT_FILES.items():
        for file in (source / f for f in files if (source / f).is_file()):
            used.append(file.name)
            for patch in _name_list(file):
                if split.setdefault(patch, name) != name:
                    raise ImportDataError(f"'{file}': patch '{patch}' is also in the {split[patch]} split")
            break
    return split, used


@IMPORTERS.register("bigearthnet")
class BigEarthNet(Importer):
    """BigEarthNet v1.0 / v2.0 -> a store with ``s2`` (12 L2A bands), ``s1`` (VV, VH) and multi-label ``labels``."""

    config = BigEarthNetOptions

    def plan(self, source: Path, options: BigEarthNetOptions) -> ImportPlan:
        version = options.version
        if version == "auto":
            version = "v2" if any((source / f).is_file() for f in ("metadata.parquet", "metadata.csv")) else "v1"
        s2_root = _find_root(source, options.s2_root, ("BigEarthNet-v1.0",), "S2")
        s1_root = _find_root(source, options.s1_root, ("BigEarthNet-S1-v1.0",), "S1")
        if s2_root is None and version == "v1" and any(n.startswith("S2") for n in _subdirs(source)):
            s2_root = source  # SOURCE is the S2 patch folder itself
        wanted = options.modalities or (["s2", "s1"] if s1_root is not None else ["s2"])
        for name, root in (("s2", s2_root), ("s1", s1_root)):
            if name in wanted and root is None:
                raise ImportDataError(f"'{source}': no {name.upper()} folder BigEarthNet-*: set {name}_root")
        notes = [f"BigEarthNet {version}, {options.classes} classes; modalities {', '.join(wanted)}"]
        plan_items = self._plan_v1 if version == "v1" else plan_v2
        items, split_used = plan_items(source, s2_root, s1_root, wanted, options, notes)
        modalities = {}
        if "s2" in wanted:
            offset, why = options.s2_offset, "set by the s2_offset option"
            if offset is None:
                offset, why = _offset([i.key for i in items if "error" not in i.info], version)
            for item in items:
                item.info["offset"] = offset
            modalities["s2"] = replace(SENSORS["s2-l2a"], offset=offset)
            notes.append(f"Sentinel-2 L2A DN offset {offset:g}: {why}")
            notes.append("S2 20 m and 60 m bands resampled bilinearly to the 10 m grid (120 x 120 in the dataset)")
        if "s1" in wanted:
            modalities["s1"] = SENSORS["s1-grd"]
        if options.classes == 19:
            kept = "kept with an all-zero label vector" if options.keep_unmapped else f"filtered ('{UNMAPPED}')"
            notes.append(f"43 -> 19 classes as BigEarthNet-19; patches with no 19-class label {kept}")
        classes = CLASSES_19 if options.classes == 19 else CLASSES_43
        return ImportPlan(
            modalities=modalities,
            items=items,
            extra_arrays={"labels": ((options.classes,), "uint8")},
            targets=[Target("labels", "multi-label", array="labels", class_names=classes, description=DESCRIPTION)],
            split="split" if split_used else None,
            attrs={"dataset": f"BigEarthNet {version}"},
            notes=[*notes, f"official split from {', '.join(split_used)}" if split_used else "no official split"],
        )

    def _plan_v1(self, source, s2_root, s1_root, wanted, options, notes) -> tuple[list[ImportItem], list[str]]:
        split, split_used = _official_split(source)
        s2_names = _subdirs(s2_root) if s2_root is not None else []
        excluded: dict[str, str] = {}
        for reason, file in EXCLUDE_FILES.items():
            if options.exclude_snow_cloud and (source / file).is_file():
                excluded.update(dict.fromkeys(_name_list(source / file), reason))
        s1_of: dict[str, str] = {}  # S2 name -> S1 name
        items: list[ImportItem] = []
        if "s1" in wanted:
            s1_names, known = _subdirs(s1_root), set(s2_names)
            jsons = [s1_root / n / f"{n}_labels_metadata.json" for n in s1_names]
            with ThreadPoolExecutor(16) as pool:
                partners = list(pool.map(_partner, jsons))
            for s1, path, partner in zip(s1_names, jsons, partners, strict=True):
                if not partner.startswith("!") and "s2" in wanted and partner not in known:
                    partner = f"!'{path}': corresponding_s2_patch '{partner}' is not in '{s2_root}'"
                elif not partner.startswith("!") and partner in s1_of:
                    partner = f"!'{path}': S2 patch '{partner}' is already paired with S1 patch '{s1_of[partner]}'"
                if partner.startswith("!"):  # read() raises it: stops the import or is skipped and counted
                    items.append(ImportItem(s1, (path,), {"error": partner[1:]}))
                else:
                    s1_of[partner] = s1
            notes.append(f"S1-S2 pairs from the S1 json 'corresponding_s2_patch'; {len(items)} S1 patches unpaired")
        counts = dict.fromkeys([*EXCLUDE_FILES, "not in the split files"], 0)
        for place in s2_names if "s2" in wanted else sorted(s1_of):
            reason = excluded.get(place) or ("not in the split files" if split and place not in split else None)
            if reason:
                counts[reason] += 1
                continue
            s1 = s1_of.get(place)
            info: dict[str, Any] = {"version": "v1", "place": place, "split": split.get(place)}
            files = []  # the jsons only: 14 band paths per item would not fit memory for 590k patches
            if "s2" in wanted:
                info["s2"] = str(s2_root / place)
                files.append(s2_root / place / f"{place}_labels_metadata.json")
            if "s1" in wanted and s1 is None:
                info["error"] = f"S2 patch '{place}': no S1 patch in '{s1_root}' names it as corresponding_s2_patch"
            elif "s1" in wanted:
                info["s1"] = str(s1_root / s1)
                files.append(s1_root / s1 / f"{s1}_labels_metadata.json")
            items.append(ImportItem(place if "s2" in wanted else s1, tuple(files), info))
        notes += [f"{n} patches left out: {reason}" for reason, n in counts.items() if n]
        if not items and any(counts.values()):  # every patch left out by the lists: name them
            files = [*split_used, *(f for f in EXCLUDE_FILES.values() if (source / f).is_file())]
            shown = ", ".join(f"{n} {reason}" for reason, n in counts.items() if n)
            raise ImportDataError(f"'{source}': every patch is left out by {', '.join(files)} ({shown})")
        return sorted(items, key=lambda i: i.key), split_used

    def read(self, item: ImportItem, options: BigEarthNetOptions) -> list[Sample | Filtered]:
        info = item.info
        if "error" in info:
            raise ImportDataError(info["error"])
        labels, row = (_meta_v1 if info["version"] == "v1" else meta_v2)(info, options)
        if info["split"] is not None:
            row["split"] = info["split"]
        if options.classes == 19 and not labels.any() and not options.keep_unmapped:
            return [Filtered(item.key, UNMAPPED)]
        arrays: dict[str, np.ndarray] = {"labels": labels}
        if "s2" in info:
            arrays["s2"] = read_s2(Path(info["s2"]))
        if "s1" in info:
            arrays["s1"] = read_s1(Path(info["s1"]), arrays["s2"].shape[1:] if "s2" in arrays else None)
        return [Sample(item.key, arrays, row)]


def _offset(names: list[str], version: str) -> tuple[float, str]:
    """The S2 DN offset of all patches, from the acquisition dates in their names (one for the whole store)."""
    dates = sorted(filter(None, map(_day, names)))
    if not dates:
        return sentinel2_offset()
    first, why = sentinel2_offset(when=date.fromisoformat(dates[0]))
    if sentinel2_offset(when=date.fromisoformat(dates[-1]))[0] != first:
        raise ImportDataError(f"S2 patches from {dates[0]} to {dates[-1]} span baseline 04.00: set s2_offset")
    why = f"acquisition dates {dates[0]} .. {dates[-1]}, {why.split('(')[-1].rstrip(')')}"
    if version == "v2":
        return first, why + "; reBEN names carry N9999 (own Sen2Cor 2.11 run), no ESA baseline: set s2_offset if needed"
    return first, why + "; each patch's L1C tile_source baseline is checked against it"


def _partner(path: Path) -> str:
    """The S2 patch an S1 json names, or ``!message`` when it cannot be read."""
    try:
        partner = _read_json(path).get("corresponding_s2_patch")
    except ImportDataError as exc:
        return f"!{exc}"
    return partner if isinstance(partner, str) and partner else f"!'{path}': no 'corresponding_s2_patch'"


def _meta_v1(info: dict[str, Any], options: BigEarthNetOptions) -> tuple[np.ndarray, dict[str, Any]]:
    """Labels and table row of a v1 patch from its json(s): the S2 json's, or the S1 json's for S1 only."""
    row: dict[str, Any] = {"location_id": info["place"]}
    if "s1" in info:
        name = Path(info["s1"]).name
        path = Path(info["s1"]) / f"{name}_labels_metadata.json"
        meta = _read_json(path)
        row |= {"time": _day(meta.get("acquisition_time"), f"'{path}'", "acquisition_time"), "tile": _tile(name, True)}
        row |= {"s1_patch": name, "s1_time": row["time"]}
    if "s2" in info:
        path = Path(info["s2"]) / f"{info['place']}_labels_metadata.json"
        meta = _read_json(path)
        product = str(meta.get("tile_source", ""))
        if options.s2_offset is None and re.search(r"_N\d{4}_", product):
            offset, why = sentinel2_offset(product=product)
            if offset != info["offset"]:
                raise ImportDataError(f"'{path}': tile_source {product} ({why}): offset {offset:g}, set s2_offset")
        row |= {"time": _day(meta.get("acquisition_date"), f"'{path}'", "acquisition_date"), "tile": _tile(product)}
    if "labels" not in meta:
        raise ImportDataError(f"'{path}': no 'labels' key (expected the patch's CORINE class names)")
    row["lat"], row["lon"] = _centre(meta, f"'{path}'")
    return label_vector(meta["labels"], options.classes, f"'{path}'"), row
