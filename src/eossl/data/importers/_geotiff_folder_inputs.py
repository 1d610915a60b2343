"""The ``geotiff-folder`` importer's inputs (see :mod:`eossl.data.importers.geotiff_folder`): image files
grouped into samples (one file per sample, or one file per band matched by band name), dates and tiles
in names; labels, metadata and masks are in :mod:`eossl.data.importers._geotiff_folder_tables`.

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

from eossl.data.importers.raster import open_raster
from eossl.data.modality import Modality
from eossl.errors import ImportDataError

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
