"""The ``geotiff-folder`` importer's tables and masks (see :mod:`eossl.data.importers.geotiff_folder`):
labels and metadata CSVs joined to samples by id (single-label, multi-label, extra columns), and mask
rasters found by folder or name pattern and read onto the image grid. Per-sample problems are
recorded as in :mod:`eossl.data.importers._geotiff_folder_inputs`."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eossl.data.importers._geotiff_folder_inputs import (
    ID_COLUMNS,
    RESERVED_COLUMNS,
    raster_header,
    resolve,
)
from eossl.data.importers._text import read_csv
from eossl.data.importers.raster import read_raster
from eossl.data.splits import SPLIT_NAMES
from eossl.data.targets import Target
from eossl.errors import ConfigError, ImportDataError


def _norm(value: Any) -> str:
    return str(value).strip().replace("\\", "/").removeprefix("./")


def read_table(path: Path, id_column: str | None) -> tuple[list[dict[str, Any]], str, list[str]]:
    """Rows of a CSV (records), its id column and its columns; errors name the file and what is wrong."""
    columns = [str(c) for c in read_csv(path, "table", nrows=0).columns]
    column = id_column or next((c for c in ID_COLUMNS if c in columns), None)
    if column is None or column not in columns:
        wanted = f"'{id_column}'" if id_column else f"one of {', '.join(ID_COLUMNS)}"
        raise ImportDataError(f"'{path}': no id column {wanted} (columns: {', '.join(columns)}); set id_column=")
    table = read_csv(path, "table", dtype={column: str})
    ids = table[column].dropna().map(_norm)
    duplicated = sorted(set(ids[ids.duplicated()]))
    if duplicated:
        raise ImportDataError(f"'{path}': ids listed more than once in column '{column}': {duplicated[:5]}")
    return table.to_dict("records"), column, columns


def match(samples: list[dict[str, Any]], records: list[dict[str, Any]], column: str) -> list[int | None]:
    """For each sample, the position of its CSV row (the first of its ``ids`` listed), else None."""
    lookup = {_norm(r[column]): i for i, r in enumerate(records) if not pd.isna(r[column])}
    return [next((lookup[i] for i in s["ids"] if i in lookup), None) for s in samples]


def _python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _unmatched_note(path: Path, records: list[dict[str, Any]], positions: list[int | None]) -> str:
    unused = len(records) - len({p for p in positions if p is not None})
    return f"; {unused} of its {len(records)} rows name no file" if unused else ""


def join_labels(
    source: Path, options: Any, samples: list[dict[str, Any]], problems: dict[str, str]
) -> tuple[Target, dict[str, tuple[tuple[int, ...], str]], str]:
    """Labels by id: ``label`` into rows (single-label) or ``labels`` 0/1 vectors (multi-label)."""
    path = resolve(source, options.labels, "labels file")
    records, column, columns = read_table(path, options.id_column)
    wanted = [options.label_column or options.multi_label] if options.label_columns is None else options.label_columns
    absent = [c for c in wanted if c not in columns]
    if absent:
        raise ImportDataError(f"'{path}': no column {absent} (columns: {', '.join(columns)})")
    positions = match(samples, records, column)
    for s, pos in zip(samples, positions, strict=True):
        if pos is None:
            problems.setdefault(s["key"], f"sample '{s['key']}': not listed in column '{column}' of '{path}'")
    if options.label_column is not None:
        names, values = _single_labels(path, options, [r[options.label_column] for r in records])
        target = Target("label", "single-label", column="label", class_names=names)
        extra: dict[str, tuple[tuple[int, ...], str]] = {}
    else:
        names, values = _multi_labels(path, options, records)
        target = Target("labels", "multi-label", array="labels", class_names=names)
        extra = {"labels": ((len(names),), "uint8")}
    for s, pos in zip(samples, positions, strict=True):
        if pos is None:
            continue
        if values[pos] is None:
            problems.setdefault(s["key"], f"sample '{s['key']}': no label in '{path}' (row of id {s['ids'][0]!r})")
        elif target.kind == "single-label":
            s["row"]["label"] = values[pos]
        else:
            s["labels"] = values[pos]
        if options.split_column in columns and not pd.isna(records[pos][options.split_column]):
            _set_split(s, records[pos][options.split_column], path, options.split_column, problems)
    note = f"{target.kind} target '{target.name}' ({len(names)} classes) from '{path.name}' by '{column}'"
    return target, extra, note + _unmatched_note(path, records, positions)


def _set_split(sample: dict[str, Any], value: Any, path: Path, column: str, problems: dict[str, str]) -> None:
    """The sample's official split from a CSV cell; a value other than train/val/test is its problem."""
    split = str(value).strip()
    if split in SPLIT_NAMES:
        sample["row"]["split"] = split
    else:
        problems.setdefault(
            sample["key"],
            f"sample '{sample['key']}': split column '{column}' of '{path}' holds {split!r}, "
            f"expected one of {', '.join(SPLIT_NAMES)}",
        )


def check_split_column(options: Any, samples: list[dict[str, Any]], problems: dict[str, str]) -> None:
    """The split column gives some sample a split, and some sample ``train``; else an error naming the CSVs."""
    splits = {s["row"]["split"] for s in samples if "split" in s["row"]}
    if "train" in splits:
        return
    csvs = " or ".join(f"'{f}'" for f in (options.labels, options.metadata) if f) or "no CSV (set labels= or metadata=)"
    if not splits:
        invalid = next((p for p in problems.values() if f"split column '{options.split_column}'" in p), None)
        raise ImportDataError(
            invalid or f"split_column '{options.split_column}': no sample has a value in that column of {csvs}"
        )
    raise ImportDataError(f"split column '{options.split_column}' of {csvs} puts no sample in train ({sorted(splits)})")


MAX_CLASS_ID = 65535
"""The largest class id a label column may hold without ``class_names`` (ids name classes 0..id)."""


def _class_id(value: Any) -> int | None:
    """``value`` as a class id (a whole number >= 0), else None (negative, fractional, infinite)."""
    try:
        number = float(value)
    except (OverflowError, ValueError):
        return None
    return int(number) if math.isfinite(number) and number >= 0 and number == int(number) else None


def _single_labels(path: Path, options: Any, cells: list[Any]) -> tuple[tuple[str, ...], list[int | None]]:
    column = options.label_column
    present = [c for c in cells if not pd.isna(c)]
    if present and all(isinstance(c, (int, float, np.number)) and not isinstance(c, bool) for c in present):
        if any(_class_id(c) is None for c in present):
            raise ImportDataError(f"'{path}': column '{column}' holds numbers that are not class ids 0, 1, ...")
        top = max(int(c) for c in present)
        if options.class_names is None and top > MAX_CLASS_ID:
            raise ImportDataError(
                f"'{path}': class id {top} in column '{column}' (ids above {MAX_CLASS_ID} need class_names=)"
            )
        names = tuple(options.class_names or (str(i) for i in range(top + 1)))
        if top >= len(names):
            raise ImportDataError(f"'{path}': class id {top} in column '{column}' but {len(names)} class_names")
        return names, [None if pd.isna(c) else int(c) for c in cells]
    text = [None if pd.isna(c) else str(c).strip() for c in cells]
    names = tuple(options.class_names or sorted({t for t in text if t is not None}))
    unknown = sorted({t for t in text if t is not None} - set(names))
    if unknown:
        raise ImportDataError(f"'{path}': column '{column}' holds classes {unknown[:5]} not in class_names")
    index = {n: i for i, n in enumerate(names)}
    return names, [None if t is None else index[t] for t in text]


def _multi_labels(
    path: Path, options: Any, records: list[dict[str, Any]]
) -> tuple[tuple[str, ...], list[list[int] | None]]:
    if options.label_columns is not None:
        names = tuple(options.label_columns)
        vectors: list[list[int] | None] = []
        for r in records:
            cells = [r[c] for c in names]
            bad = [(c, v) for c, v in zip(names, cells, strict=True) if not pd.isna(v) and v not in (0, 1)]
            if bad:
                raise ImportDataError(f"'{path}': column '{bad[0][0]}' holds {bad[0][1]!r}; label_columns hold 0 or 1")
            vectors.append(None if any(pd.isna(v) for v in cells) else [int(v) for v in cells])
        return names, vectors
    sets = [
        [] if pd.isna(r[options.multi_label]) else [t.strip() for t in re.split(r"[;|]", str(r[options.multi_label]))]
        for r in records
    ]
    sets = [[t for t in s if t] for s in sets]
    found = {t for s in sets for t in s}
    names = tuple(options.class_names or sorted(found))
    unknown = sorted(found - set(names))
    if unknown or not names:
        raise ImportDataError(
            f"'{path}': column '{options.multi_label}' holds classes {unknown[:5]} not in class_names"
            if unknown
            else f"'{path}': column '{options.multi_label}' names no class"
        )
    index = {n: i for i, n in enumerate(names)}
    out: list[list[int] | None] = []
    for s in sets:
        vector = [0] * len(names)
        for t in s:
            vector[index[t]] = 1
        out.append(vector)
    return names, out


def join_metadata(source: Path, options: Any, samples: list[dict[str, Any]], problems: dict[str, str]) -> str:
    """Metadata columns by id into rows; a ``time`` (or ``date``) column becomes the ISO date ``time``."""
    path = resolve(source, options.metadata, "metadata file")
    records, column, columns = read_table(path, options.id_column)
    copied = [c for c in columns if c != column and c not in RESERVED_COLUMNS]
    time_column = next((c for c in ("time", "date") if c in copied), None)
    positions = match(samples, records, column)
    for s, pos in zip(samples, positions, strict=True):
        if pos is None:
            continue
        record = records[pos]
        for c in copied:
            if c != time_column and not pd.isna(record[c]):
                s["row"][c] = _python(record[c])
        if options.split_column in copied and not pd.isna(record[options.split_column]) and "split" not in s["row"]:
            _set_split(s, record[options.split_column], path, options.split_column, problems)
        if time_column and not pd.isna(record[time_column]):
            try:
                s["time"] = pd.Timestamp(str(record[time_column])).date().isoformat()
            except ValueError:
                problems.setdefault(
                    s["key"],
                    f"sample '{s['key']}': '{path}' column '{time_column}' holds {record[time_column]!r}, not a date",
                )
    missing = sum(p is None for p in positions)
    note = f"metadata columns {', '.join(copied)} from '{path.name}' by '{column}'"
    if missing:
        note += f"; {missing} samples have no row there (lat/lon from the raster, time from the name)"
    return note + _unmatched_note(path, records, positions)


class MaskFinder:
    """Finds a sample's mask raster: ``folder/<stem>.tif`` or a ``{stem}`` pattern (image folder, then SOURCE)."""

    def __init__(self, source: Path, spec: str) -> None:
        self.base = source if source.is_dir() else source.parent
        self.pattern = spec if "{" in spec else None
        self.folder = None
        if self.pattern is not None:
            try:
                spec.format(stem="x")
            except (KeyError, IndexError, ValueError):
                raise ConfigError(
                    f"masks pattern {spec!r}: the only field is {{stem}} (e.g. {{stem}}_mask.tif)"
                ) from None
        else:
            self.folder = resolve(source, spec, "masks folder")
            if not self.folder.is_dir():
                raise ConfigError(f"masks '{spec}' is neither a folder nor a pattern with {{stem}}")

    def candidates(self, folder: Path, stem: str) -> list[Path]:
        if self.pattern is not None:
            name = self.pattern.format(stem=stem)
            return [folder / name, self.base / name]
        assert self.folder is not None
        return [self.folder / f"{stem}{ext}" for ext in (".tif", ".tiff")]

    def find(self, folder: Path, stem: str) -> Path | None:
        return next((p for p in self.candidates(folder, stem) if p.is_file()), None)

    def expected(self, folder: Path, stem: str) -> str:
        return " or ".join(f"'{p}'" for p in self.candidates(folder, stem))

    def exclude(self, files: list[Path]) -> list[Path]:
        """The image files, without the masks among them."""
        if self.folder is not None:
            masks = self.folder.resolve()
            return [f for f in files if not f.resolve().is_relative_to(masks)]
        found = {m.resolve() for f in files if (m := self.find(f.parent, f.stem)) is not None}
        return [f for f in files if f.resolve() not in found]

    @staticmethod
    def target(options: Any) -> Target:
        names = tuple(options.mask_classes or ())
        return Target("mask", "segmentation", array="mask", class_names=names, ignore_index=options.ignore_index)


def mask_dtype(samples: list[dict[str, Any]], problems: dict[str, str]) -> str:
    """The stored dtype of masks: the first readable mask's, which must be an integer type."""
    for s in samples:
        if s["key"] in problems or s.get("mask") is None:
            continue
        try:
            dtype = raster_header(s["mask"])["dtype"]
        except ImportDataError as exc:
            problems[s["key"]] = str(exc)
            continue
        if not np.issubdtype(np.dtype(dtype), np.integer):
            raise ImportDataError(f"'{s['mask']}': mask of dtype {dtype}; masks hold integer class ids")
        return str(dtype)
    return "uint8"


def read_mask(path: Path, ref: Path, ref_header: dict[str, Any], info: dict[str, Any], options: Any) -> np.ndarray:
    """A sample's class raster on the image grid ``[1, H, W]`` (nearest), checked against the image."""
    header = raster_header(path)
    shape = ref_header["shape"]
    if header["count"] != 1:
        raise ImportDataError(f"'{path}': a mask has one band, found {header['count']}")
    if header["georef"] and ref_header["georef"]:
        left, bottom, right, top = ref_header["bounds"]
        pixel = max((right - left) / shape[1], (top - bottom) / shape[0])
        if max(abs(a - b) for a, b in zip(header["bounds"], ref_header["bounds"], strict=True)) > pixel:
            raise ImportDataError(
                f"'{path}': mask extent {header['bounds']} differs from image '{ref}' extent {ref_header['bounds']}"
            )
    elif header["shape"] != shape:
        raise ImportDataError(
            f"'{path}': mask is {header['shape'][0]}x{header['shape'][1]}, image '{ref}' is {shape[0]}x{shape[1]}; "
            "without georeferencing they must have the same size"
        )
    values = read_raster(path, out_shape=None if header["shape"] == shape else shape, resampling="nearest")
    dtype = np.dtype(info["mask_dtype"])
    if not np.issubdtype(values.dtype, np.integer):
        raise ImportDataError(f"'{path}': mask of dtype {values.dtype}; masks hold integer class ids")
    ids = np.unique(values)
    if ids.size and (ids[0] < np.iinfo(dtype).min or ids[-1] > np.iinfo(dtype).max):
        raise ImportDataError(f"'{path}': mask values {ids[0]}..{ids[-1]} do not fit {dtype} (the first mask's dtype)")
    if options.mask_classes:
        bad = [int(v) for v in ids if not (0 <= v < len(options.mask_classes) or v == options.ignore_index)]
        if bad:
            raise ImportDataError(
                f"'{path}': mask values {bad[:5]} are no class of mask_classes (0..{len(options.mask_classes) - 1})"
                + ("" if options.ignore_index is None else f" nor ignore_index {options.ignore_index}")
            )
    return values.astype(dtype)
