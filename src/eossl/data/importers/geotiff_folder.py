"""Any folder of GeoTIFFs -> a store: one modality described by a sensor preset or YAML, optional labels.

Layouts (``layout``; ``auto`` decides from the first readable file: as many bands as the sensor ->
file per sample, one band and a band-named file -> file per band)::

    file-per-sample   SOURCE/**/<name>.tif           one multi-band GeoTIFF per sample, bands in the
                                                     sensor's order (or ``bands=``' order)
    file-per-band     SOURCE/<sample>/<any>_B02.tif  one single-band file per band, a sample a sub-folder
                      SOURCE/<sample>_B02.tif        ... or files named <sample>_<BAND>.tif in one folder

A band file's stem ends in the band name, zero-padded or not (``B2``/``B02``, ``B8A``/``B08A``),
case-insensitively, after ``_``/``-``/``.`` or at the start, optionally followed by a resolution suffix
(``_B02_10m``); ``B1`` never matches ``B11``. Bands at coarser resolutions (Sentinel-2 20 m and 60 m)
are resampled bilinearly onto the finest band's grid. Tif files that name no band are left out and
counted in the notes.

Labels: ``labels=FILE.csv`` joined by ``id_column`` (default ``fn``, ``file``, ``filename`` or ``id``;
matched against the file name, stem or path relative to SOURCE, or a per-band sample's name or folder)
-> target ``label`` (single-label, ``label_column``; strings -> classes sorted by name, integers are
class ids named by ``class_names``) or ``labels`` (multi-label: ``multi_label`` a column of class names
separated by ``;`` or ``|``, or ``label_columns`` of 0/1 columns). ``masks`` (a folder of
``<stem>.tif``, or a pattern such as ``{stem}_mask.tif`` relative to the image's folder or SOURCE)
-> target ``mask`` (segmentation), resampled nearest onto the image grid when its size differs but
its extent agrees. ``metadata=FILE.csv`` adds its columns by id (``lat``, ``lon``, ``time``, ...);
otherwise lat/lon are the raster's centre and the time a date in the path (YYYYMMDD or YYYY-MM-DD).
``split_column`` names a train/val/test column of either CSV as the official split.

Tiles: ``patch_size`` cuts each image into windows every ``stride`` (keys ``<key>_r<row>_c<col>``);
patches whose NaN/nodata share is above ``max_invalid`` are filtered (counted in the report). Patches
of one ``split_block`` x ``split_block`` pixel block share a ``location_id`` (by their top-left pixel),
so neighbours stay in one split; without tiling the file is the place (a metadata ``location_id``
column wins). Patch lat/lon are the patch centres where the raster has a CRS. Per-sample tiles are
read in strips of patch rows; per-band tiles are read whole. Labels from a CSV apply to every patch.

Conventions decided here: Sentinel-2 presets take their DN offset per file from
:func:`~eossl.data.sensors.sentinel2_offset` (all files must agree; ``offset=`` forces it). The store
has one ``nodata``: the sensor's, or ``nodata=``; without ``nodata=`` a file whose own nodata tag
differs is an error (the tag would otherwise be read as data), with ``nodata=`` tags are not checked.
Pixels are stored in the sensor's dtype; values that do not fit it are an error, never clipped.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from eossl.data.importers import _geotiff_folder_inputs as inputs
from eossl.data.importers import _geotiff_folder_tables as tables
from eossl.data.importers._base import IMPORTERS, Filtered, Importer, ImporterOptions, ImportItem, ImportPlan, Sample
from eossl.data.importers._geotiff_folder_pixels import fit_dtype, patch_centres, patch_values
from eossl.data.importers.raster import (
    invalid_share,
    patch_grid,
    read_band_files,
    read_raster,
)
from eossl.data.modality import Modality
from eossl.data.sensors import SENSORS, sensor_modality, sentinel2_offset
from eossl.errors import ConfigError, ImportDataError


class GeoTiffFolderOptions(ImporterOptions):
    """Options of the ``geotiff-folder`` importer (see :mod:`eossl.data.importers.geotiff_folder`)."""

    sensor: str = Field("s2-l2a", description=f"sensor preset ({', '.join(SENSORS)}) or a sensor YAML file")
    modality: str | None = Field(None, description="the store's modality name (default: the sensor's, e.g. s2)")
    bands: list[str] | None = Field(None, description="the sensor's bands the files hold, in file order (default all)")
    layout: Literal["auto", "file-per-sample", "file-per-band"] = Field("auto", description="how files make samples")
    pattern: str | None = Field(None, description="glob of image files relative to SOURCE (default **/*.tif, .tiff)")
    labels: str | None = Field(None, description="CSV of labels by id (relative to SOURCE or the working directory)")
    id_column: str | None = Field(None, description="id column of the CSVs (default fn, file, filename or id)")
    label_column: str | None = Field(None, description="single-label column: class names or integer class ids")
    class_names: list[str] | None = Field(None, description="class names (order = ids) for label_column/multi_label")
    multi_label: str | None = Field(None, description="multi-label column of class names separated by ';' or '|'")
    label_columns: list[str] | None = Field(None, description="multi-label as 0/1 columns, one per class")
    masks: str | None = Field(None, description="folder of <stem>.tif class rasters, or a pattern like {stem}_mask.tif")
    mask_classes: list[str] | None = Field(None, description="class names of the mask values 0..n-1")
    ignore_index: int | None = Field(None, description="mask value meaning 'no label'")
    metadata: str | None = Field(None, description="CSV of per-file columns by id (lat, lon, time, location_id, ...)")
    split_column: str | None = Field(None, description="train/val/test column of the labels or metadata CSV")
    patch_size: int | None = Field(None, ge=1, description="cut images into patches of this many pixels (None: whole)")
    stride: int | None = Field(None, ge=1, description="pixels between patches (default patch_size)")
    max_invalid: float = Field(0.5, ge=0, le=1, description="tiled patches with more NaN/nodata are filtered")
    split_block: int = Field(1024, ge=1, description="pixels of the blocks whose patches are one place (location_id)")
    offset: float | Literal["auto"] = Field("auto", description="DN offset; auto: Sentinel-2 baseline per file")
    nodata: float | None = Field(
        None, description="the store's nodata (default the sensor's, and files tagged otherwise are refused)"
    )
    require_crs: bool = Field(False, description="refuse rasters without a CRS (default: allowed, lat/lon NaN)")

    @model_validator(mode="after")
    def _consistent(self) -> GeoTiffFolderOptions:
        modes = [k for k in ("label_column", "multi_label", "label_columns") if getattr(self, k) is not None]
        if self.labels is None and modes:
            raise ValueError(f"{modes[0]} needs labels=FILE.csv")
        if self.labels is not None and len(modes) != 1:
            raise ValueError("labels= needs exactly one of label_column, multi_label or label_columns")
        if self.class_names is not None and self.label_columns is not None:
            raise ValueError("class_names do not apply to label_columns (the columns are the classes)")
        if self.stride is not None and self.patch_size is None:
            raise ValueError("stride needs patch_size")
        if (self.mask_classes is not None or self.ignore_index is not None) and self.masks is None:
            raise ValueError("mask_classes and ignore_index need masks=")
        return self


def _modality(source: Path, options: GeoTiffFolderOptions) -> Modality:
    spec: str | Path = options.sensor
    if spec not in SENSORS:
        spec = inputs.resolve(source, options.sensor, "sensor file")
    modality = sensor_modality(spec, name=options.modality)
    if options.bands:
        canon = [inputs.split_band(b) or b.upper() for b in modality.bands]
        picked = []
        for band in options.bands:
            key = inputs.split_band(band) or band.upper()
            if key not in canon:
                raise ConfigError(
                    f"bands: {band!r} is not a band of sensor {options.sensor} ({', '.join(modality.bands)})"
                )
            picked.append(canon.index(key))
        wl = modality.wavelengths_nm
        modality = replace(
            modality,
            bands=tuple(modality.bands[i] for i in picked),
            gsd_m=tuple(modality.gsd_m[i] for i in picked),
            wavelengths_nm=None if wl is None else tuple(wl[i] for i in picked),
        )
    if options.nodata is not None:
        modality = replace(modality, nodata=options.nodata)
    if modality.name in ("label", "labels", "mask"):
        raise ConfigError(f"modality name {modality.name!r} is a target name; choose another (modality=...)")
    return modality


def _layout(options: GeoTiffFolderOptions, files: list[Path], modality: Modality) -> str:
    if options.layout != "auto":
        return options.layout
    header, path = inputs.first_readable(files)
    if header["count"] == modality.num_bands:
        return "file-per-sample"
    if header["count"] == 1 and any(inputs.band_regex(b).search(path.stem) for b in modality.bands):
        return "file-per-band"
    raise ImportDataError(
        f"'{path}': {header['count']} bands, but sensor {options.sensor} has {modality.num_bands} "
        f"({', '.join(modality.bands)}) and the name ends in no band name; set layout= (or bands=, sensor=)"
    )


def _offset(options: GeoTiffFolderOptions, samples: list[dict[str, Any]], modality: Modality) -> tuple[float, str]:
    """The modality's DN offset and the note saying how it was decided."""
    if options.offset != "auto":
        return float(options.offset), f"DN offset {float(options.offset):g} set by offset="
    if not (options.sensor in SENSORS and options.sensor.startswith("s2-")):
        return modality.offset, f"DN offset {modality.offset:g} of sensor {options.sensor}"
    found: dict[float, list[tuple[str, str]]] = {}
    for s in samples:
        when = date.fromisoformat(s["time"]) if s["time"] else None
        offset, why = sentinel2_offset(s["rel"], when)
        found.setdefault(offset, []).append((s["key"], why))
    if len(found) > 1:
        parts = [f"{len(v)} with offset {k:g} (e.g. '{v[0][0]}': {v[0][1]})" for k, v in sorted(found.items())]
        raise ImportDataError(
            f"mixed Sentinel-2 processing baselines in one modality: {'; '.join(parts)}; import them "
            "separately (pattern=...) or set offset=0 or offset=-1000"
        )
    ((offset, decided),) = found.items()
    assumed = sum("assumed" in why for _, why in decided)
    return offset, (
        f"Sentinel-2 DN offset {offset:g} for all {len(decided)} samples (e.g. '{decided[0][0]}': {decided[0][1]})"
        + (f"; {assumed} of them assumed (no baseline or date in the name)" if assumed else "")
    )


def _shapes(
    options: GeoTiffFolderOptions, samples: list[dict[str, Any]], problems: dict[str, str]
) -> tuple[dict[str, tuple[int, int]], int]:
    """Image grid (the finest band's) per sample, every one when tiling, else the first readable one;
    and how many of the rasters read have no CRS."""
    shapes: dict[str, tuple[int, int]] = {}
    no_crs = tried = 0
    for s in samples:
        if s["key"] in problems:
            continue
        tried += 1
        try:
            headers = [inputs.raster_header(p) for p in s["paths"]]
        except ImportDataError as exc:
            problems[s["key"]] = str(exc)
            continue
        best = max(headers, key=lambda h: h["shape"][0] * h["shape"][1])
        shapes[s["key"]], s["size_from"] = best["shape"], str(s["paths"][headers.index(best)])
        no_crs += not best["crs"]
        if not options.patch_size:
            break
    if not shapes:
        what = "can be imported" if tried == 0 else "has a readable image"
        raise ImportDataError(f"none of the {len(samples)} samples {what}: {next(iter(problems.values()))}")
    return shapes, no_crs


@IMPORTERS.register("geotiff-folder")
class GeoTiffFolder(Importer):
    """Any folder of GeoTIFFs (file per sample or per band; optional labels, masks, metadata, tiling)."""

    config = GeoTiffFolderOptions

    def plan(self, source: Path, options: GeoTiffFolderOptions) -> ImportPlan:
        modality = _modality(source, options)
        root = source.parent if source.is_file() else source
        masks = tables.MaskFinder(source, options.masks) if options.masks else None
        files = inputs.list_files(source, options.pattern)
        files = masks.exclude(files) if masks is not None else files
        if not files:
            raise ImportDataError(f"'{source}': no GeoTIFF matches {options.pattern or '**/*.tif, **/*.tiff'}")
        layout = _layout(options, files, modality)
        notes = [f"layout {layout}: bands {', '.join(modality.bands)} of sensor {options.sensor}"]
        per_band = layout == "file-per-band"
        samples, ignored = inputs.per_band(root, files, modality) if per_band else inputs.per_sample(root, files)
        problems: dict[str, str] = {}
        for s in samples:
            names = inputs.names_of(root, next(p for p in s["paths"] if p is not None))
            s.update(row={}, time=inputs.date_in(names), labels=None, mask=None)
            tile = next((m.group(1) for n in names if (m := inputs.MGRS.search(n))), None)
            if tile:
                s["row"]["tile"] = tile
            missing = [modality.bands[i] for i, p in enumerate(s["paths"]) if p is None]
            if missing:
                problems[s["key"]] = f"sample '{s['key']}' in '{s['dir']}': no file for band {', '.join(missing)}"
            if masks is not None:
                s["mask"] = masks.find(s["dir"], s["name"])
                if s["mask"] is None:
                    expected = masks.expected(s["dir"], s["name"])
                    problems.setdefault(s["key"], f"sample '{s['key']}': no mask {expected}")
        ignored = [n for n in ignored if n not in {s["mask"].name for s in samples if s["mask"] is not None}]
        if ignored:
            notes.append(f"{len(ignored)} tif files name no band and were left out (e.g. {', '.join(ignored[:3])})")
        notes.append(
            f"nodata {modality.nodata} set by nodata= (files' nodata tags not checked)"
            if options.nodata is not None
            else f"nodata {modality.nodata} of sensor {options.sensor}; files with another nodata tag are refused"
        )
        targets, extra = [], {}
        if options.labels:
            target, arrays, note = tables.join_labels(source, options, samples, problems)
            targets.append(target)
            extra.update(arrays)
            notes.append(note)
        if options.metadata:
            notes.append(tables.join_metadata(source, options, samples, problems))
        if options.split_column:
            tables.check_split_column(options, samples, problems)
            for s in samples:
                if "split" not in s["row"]:
                    csvs = " or ".join(f"'{f}'" for f in (options.labels, options.metadata) if f)
                    problems.setdefault(
                        s["key"], f"sample '{s['key']}': no value in split column '{options.split_column}' of {csvs}"
                    )
        offset, note = _offset(options, samples, modality)
        modality = replace(modality, offset=offset)
        notes.append(note)
        shapes, no_crs = _shapes(options, samples, problems)
        if no_crs:
            notes.append(
                f"{no_crs} of the {len(shapes)} rasters checked have no CRS: lat/lon NaN unless metadata gives them"
            )
        size = (options.patch_size,) * 2 if options.patch_size else next(iter(shapes.values()))
        if masks is not None:
            extra["mask"] = ((1, *size), tables.mask_dtype(samples, problems))
            targets.append(masks.target(options))
        if problems and options.on_error == "raise":
            shown = "; ".join(list(problems.values())[:5])
            raise ImportDataError(
                f"{len(problems)} of {len(samples)} samples cannot be imported: {shown}"
                + ("; ..." if len(problems) > 5 else "")
                + " (on_error=skip leaves them out and counts them)"
            )
        spec = {"name": modality.name, "dtype": modality.dtype, "nodata": modality.nodata, "bands": modality.bands}
        first = next(s for s in samples if s["key"] in shapes)
        capacity, items = 0, []
        for s in samples:
            info = {k: s[k] for k in ("row", "time", "labels", "rel")}
            info.update(
                layout=layout,
                modality=spec,
                paths=[str(p) if p is not None else None for p in s["paths"]],
                mask=None if s["mask"] is None else str(s["mask"]),
                mask_dtype=extra.get("mask", (None, None))[1],
                error=problems.get(s["key"]),
                size=size,
                size_from=first["size_from"],
            )
            if options.patch_size and s["key"] in shapes:
                capacity += len(patch_grid(*shapes[s["key"]], options.patch_size, options.stride))
            files_ = tuple(Path(p) for p in (*info["paths"], info["mask"]) if p is not None)
            items.append(ImportItem(s["key"], files_, info))
        if options.patch_size and capacity == 0:
            largest = max(shapes.values(), key=lambda hw: hw[0] * hw[1])
            raise ImportDataError(
                f"'{source}': no image holds a {options.patch_size} px patch (largest {largest[0]}x{largest[1]})"
            )
        if options.patch_size:
            notes.append(
                f"patches of {options.patch_size} px every {options.stride or options.patch_size} px; over "
                f"{options.max_invalid:g} NaN/nodata filtered; {options.split_block} px blocks are one place"
            )
        return ImportPlan(
            modalities={modality.name: modality},
            items=items,
            extra_arrays=extra,
            capacity=capacity or None,
            targets=targets,
            split="split" if options.split_column else None,
            attrs={"layout": layout, "sensor": options.sensor},
            notes=notes,
        )

    def read(self, item: ImportItem, options: GeoTiffFolderOptions) -> list[Sample | Filtered]:
        info = item.info
        if info["error"]:
            raise ImportDataError(info["error"])
        paths = [Path(p) for p in info["paths"]]
        headers = [inputs.raster_header(p) for p in paths]
        for path, header in zip(paths, headers, strict=True):
            _check_header(path, header, info, options)
        best = max(range(len(paths)), key=lambda i: headers[i]["shape"][0] * headers[i]["shape"][1])
        ref, shape = paths[best], headers[best]["shape"]
        if not options.patch_size and shape != tuple(info["size"]):
            raise ImportDataError(
                f"'{ref}': {shape[0]}x{shape[1]} pixels, but '{info['size_from']}' has {info['size'][0]}x"
                f"{info['size'][1]}; without patch_size= all images must have one size (or set patch_size=)"
            )
        mask = tables.read_mask(Path(info["mask"]), ref, headers[best], info, options) if info["mask"] else None
        name, dtype, nodata = info["modality"]["name"], info["modality"]["dtype"], info["modality"]["nodata"]
        extra = {} if info["labels"] is None else {"labels": np.asarray(info["labels"], dtype=np.uint8)}
        if not options.patch_size:
            values = read_raster(paths[0]) if info["layout"] == "file-per-sample" else read_band_files(paths)
            arrays = {name: fit_dtype(values, dtype, ref), **extra, **({} if mask is None else {"mask": mask})}
            given = "lat" in info["row"] and "lon" in info["row"]
            return [
                Sample(item.key, arrays, _row(info, item.key, (np.nan, np.nan) if given else headers[best]["centre"]))
            ]
        patches = patch_grid(*shape, options.patch_size, options.stride)
        centres = patch_centres(ref, patches) if headers[best]["crs"] else [None] * len(patches)
        out: list[Sample | Filtered] = []
        reason = f"NaN/nodata share above max_invalid={options.max_invalid:g}"
        for (patch, values), centre in zip(patch_values(info, paths, patches, shape), centres, strict=True):
            key = f"{item.key}_r{patch.row}_c{patch.col}"
            share = invalid_share(values, nodata)
            if share > options.max_invalid or share == 1.0:
                out.append(Filtered(key, reason))
                continue
            block = f"{item.key}_b{patch.row // options.split_block}_{patch.col // options.split_block}"
            row = _row(info, block, (np.nan, np.nan), tile=item.key)
            if centre is not None:
                row["lat"], row["lon"] = centre
            arrays = {name: fit_dtype(values, dtype, ref), **extra}
            if mask is not None:
                arrays["mask"] = mask[(slice(None), *patch.slices)]
            out.append(Sample(key, arrays, row))
        return out


def _row(info: dict[str, Any], location: str, latlon: tuple[float, float], tile: str | None = None) -> dict[str, Any]:
    """A table row: place, centre, time and path, then the CSVs' columns (which win)."""
    row: dict[str, Any] = {"location_id": location, "lat": latlon[0], "lon": latlon[1], "source_path": info["rel"]}
    if info["time"]:
        row["time"] = info["time"]
    if tile:
        row["tile"] = tile
    row.update(info["row"])
    return row


def _check_header(path: Path, header: dict[str, Any], info: dict[str, Any], options: GeoTiffFolderOptions) -> None:
    spec = info["modality"]
    if options.require_crs and not header["crs"]:
        raise ImportDataError(f"'{path}': raster has no CRS (unknown georeferencing); require_crs=true refuses it")
    if info["layout"] == "file-per-sample" and header["count"] != len(spec["bands"]):
        raise ImportDataError(
            f"'{path}': {header['count']} bands, expected {len(spec['bands'])} ({', '.join(spec['bands'])}) "
            f"of sensor {options.sensor}"
        )
    tag = header["nodata"]
    if options.nodata is None and tag is not None and not np.isnan(tag) and tag != spec["nodata"]:
        raise ImportDataError(
            f"'{path}': its nodata tag is {tag:g} but sensor {options.sensor} has nodata {spec['nodata']}; the store "
            f"holds one nodata value: set nodata={tag:g} to use the files' tag"
        )
