"""The ``geotiff-folder`` importer's inputs (see :mod:`eossl.data.importers.geotiff_folder`): image files
grouped into samples (one file per sample, or one file per band matched by band name), dates and tiles
in names, labels and metadata CSVs joined by id, and mask rasters found by folder or name pattern.

Samples are plain dicts built by the importer's plan: ``key``, ``ids`` (the names a CSV may use for
them), ``paths``, ``dir``, ``row`` (table columns), ``time``; functions here add to ``row``, ``time``
and ``labels``, and record per-sample problems (``key -> message``) that the plan raises together or,
with ``on_error=skip``, leaves to be skipped and counted.
"""

from __future__ import annotations

import functools
import re
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eossl.data.importers.raster import open_raster, read_raster
from eossl.data.modality import Modality
from eossl.data.targets import Target
from eossl.errors import ConfigError, ImportDataError

ID_COLUMNS = ("fn", "file", "filename", "id")
RESERVED_COLUMNS = ("sample_key", "sample_id", "label", "labels", "mask", "source_path")
"""Metadata columns not copied into the table (the writer's and this importer's own)."""

TIF_SUFFIXES = (".tif", ".tiff")
_DATE = re.compile(r"(?<!\d)(\d{4})(-?)(\d{2})\2(\d{2})(?!\d)")
MGRS = re.compile(r"(?:^|_)T(\d{2}[A-Z]{3})(?:_|$)")


def split_band(name: str) -> tuple[str, int, str] | None:
    """``B8A`` -> ``("B", 8, "A")``: a band name made of a prefix, a number and a suffix (else None)."""
    match = re.fullmatch(r"(.*?[^\d])(\d+)([A-Za-z]*)", name)
    return None if match is None else (match.group(1).upper(), int(match.group(2)), match.group(3).upper())


def band_regex(name: str) -> re.Pattern[str]:
    """A file stem ending in band ``name`` (zero padding free, an optional ``_10m`` after it)."""
    parts = split_band(name)
    core = re.escape(name) if parts is None else f"{re.escape(parts[0])}0*{parts[1]}{re.escape(parts[2])}"
    return re.compile(rf"(?:^|[^A-Za-z0-9]){core}(?:[_-]\d+m)?$", re.IGNORECASE)


def list_files(source: Path, pattern: str | None) -> list[Path]:
    """The image files: ``pattern`` under ``source`` (default every .tif/.tiff), hidden folders left out."""
    if source.is_file():
        return [source]
    found = source.glob(pattern) if pattern else (p for p in source.rglob("*") if p.suffix.lower() in TIF_SUFFIXES)
    return sorted(p for p in found if p.is_file() and not any(s.startswith(".") for s in p.relative_to(source).parts))


def raster_header(path: Path) -> dict[str, Any]:
    """Band count, ``(height, width)``, dtype, nodata tag, CRS presence, bounds, georeferencing and the
    centre in lat/lon (NaN without CRS). Cached per file version, so planning and reading open it once."""
    stat = Path(path).stat()
    return dict(_header(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8192)
def _header(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    from rasterio.warp import transform

    with open_raster(path) as src:
        centre = (float("nan"), float("nan"))
        if src.crs is not None:
            x, y = src.transform @ (src.width / 2, src.height / 2)
            lon, lat = transform(src.crs, "EPSG:4326", [x], [y])
            centre = (float(lat[0]), float(lon[0]))
        return {
            "count": src.count,
            "shape": (src.height, src.width),
            "dtype": src.dtypes[0],
            "nodata": src.nodata,
            "crs": src.crs is not None,
            "bounds": tuple(src.bounds),
            "georef": not src.transform.is_identity,
            "centre": centre,
        }


def date_in(parts: list[str]) -> str | None:
    """The first valid date (YYYYMMDD or YYYY-MM-DD) in the given names, as an ISO string."""
    for part in parts:
        for match in _DATE.finditer(part):
            try:
                found = date(int(match.group(1)), int(match.group(3)), int(match.group(4)))
            except ValueError:
                continue
            if 1950 <= found.year <= 2100:
                return found.isoformat()
    return None


def names_of(root: Path, path: Path) -> list[str]:
    """The file name, then its folders up to ``root`` (nearest first): where dates and tiles are looked for."""
    rel = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
    return [rel.name, *[p.name for p in rel.parents if p.name]]


def _unique_keys(names: list[str], fallbacks: list[str]) -> list[str]:
    return names if len(set(names)) == len(names) else fallbacks


def rel_path(root: Path, path: Path) -> Path:
    """``path`` relative to ``root`` (its name alone when outside)."""
    return path.relative_to(root) if path.is_relative_to(root) else Path(path.name)


def per_sample(root: Path, files: list[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """One sample per file, keyed by stem (by path relative to ``root`` where stems repeat)."""
    rels = [rel_path(root, p) for p in files]
    keys = _unique_keys([p.stem for p in files], [r.with_suffix("").as_posix() for r in rels])
    samples = [
        {
            "key": k,
            "name": p.stem,
            "paths": [p],
            "dir": p.parent,
            "rel": r.as_posix(),
            "ids": [r.as_posix(), r.with_suffix("").as_posix(), p.name, p.stem],
        }
        for k, p, r in zip(keys, files, rels, strict=True)
    ]
    return samples, []


def per_band(root: Path, files: list[Path], modality: Modality) -> tuple[list[dict[str, Any]], list[str]]:
    """Band files grouped into samples by folder and the name before the band; band paths in the
    modality's order (``None`` where a band has no file); and the names of files that name no band."""
    regexes = [band_regex(b) for b in modality.bands]
    groups: dict[tuple[Path, str], dict[int, Path]] = {}
    ignored = []
    for path in files:
        hits = [(i, m) for i, r in enumerate(regexes) if (m := r.search(path.stem))]
        if not hits:
            ignored.append(path.name)
            continue
        if len(hits) > 1:
            raise ImportDataError(f"'{path}': the name matches several bands ({[modality.bands[i] for i, _ in hits]})")
        index, match = hits[0]
        group = groups.setdefault((path.parent, path.stem[: match.start()].rstrip("_-.")), {})
        if index in group:
            raise ImportDataError(f"'{path}' and '{group[index]}' are both band {modality.bands[index]} of one sample")
        group[index] = path
    samples = []
    for (folder, prefix), bands in sorted(groups.items()):
        rel = rel_path(root, folder) / prefix if prefix else rel_path(root, folder)
        name = prefix or folder.name
        ids = [name, rel.as_posix(), folder.name, rel_path(root, folder).as_posix()]
        paths = [bands.get(i) for i in range(modality.num_bands)]
        samples.append({"key": name, "name": name, "paths": paths, "dir": folder, "rel": rel.as_posix(), "ids": ids})
    keys = _unique_keys([s["key"] for s in samples], [s["rel"] for s in samples])
    for sample, key in zip(samples, keys, strict=True):
        sample["key"] = key
    return samples, ignored


def resolve(source: Path, value: str, what: str) -> Path:
    """``value`` as given (absolute), under SOURCE, or relative to the working directory."""
    path = Path(value).expanduser()
    base = source if source.is_dir() else source.parent
    for candidate in [path] if path.is_absolute() else [base / path, path]:
        if candidate.exists():
            return candidate
    raise ImportDataError(f"{what} '{value}' not found (looked under '{base}' and in the working directory)")


def first_readable(files: list[Path]) -> tuple[dict[str, Any], Path]:
    """The header of the first file that opens (a damaged first file is left for the read to report)."""
    first_error = None
    for path in files:
        try:
            return raster_header(path), path
        except ImportDataError as exc:
            first_error = first_error or exc
    raise first_error or ImportDataError("no files given")


def _norm(value: Any) -> str:
    return str(value).strip().replace("\\", "/").removeprefix("./")


def read_table(path: Path, id_column: str | None) -> tuple[list[dict[str, Any]], str, list[str]]:
    """Rows of a CSV (records), its id column and its columns; errors name the file and what is wrong."""
    try:
        columns = [str(c) for c in pd.read_csv(path, nrows=0).columns]
        column = id_column or next((c for c in ID_COLUMNS if c in columns), None)
        if column is None or column not in columns:
            wanted = f"'{id_column}'" if id_column else f"one of {', '.join(ID_COLUMNS)}"
            raise ImportDataError(f"'{path}': no id column {wanted} (columns: {', '.join(columns)}); set id_column=")
        table = pd.read_csv(path, dtype={column: str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise ImportDataError(f"'{path}': not a readable CSV ({exc})") from None
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
            s["row"]["split"] = str(records[pos][options.split_column]).strip()
    note = f"{target.kind} target '{target.name}' ({len(names)} classes) from '{path.name}' by '{column}'"
    return target, extra, note + _unmatched_note(path, records, positions)


def _single_labels(path: Path, options: Any, cells: list[Any]) -> tuple[tuple[str, ...], list[int | None]]:
    column = options.label_column
    present = [c for c in cells if not pd.isna(c)]
    if present and all(isinstance(c, (int, float, np.number)) and not isinstance(c, bool) for c in present):
        if any(float(c) != int(c) or c < 0 for c in present):
            raise ImportDataError(f"'{path}': column '{column}' holds numbers that are not class ids 0, 1, ...")
        top = max(int(c) for c in present)
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
        if options.split_column in copied and not pd.isna(record[options.split_column]):
            s["row"].setdefault("split", str(record[options.split_column]).strip())
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
