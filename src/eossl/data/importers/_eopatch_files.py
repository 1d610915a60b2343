"""Reading eo-learn EOPatch folders without unpickling anything: feature arrays (``.npy``, ``.npy.gz``)
with ``allow_pickle=False``, ``timestamps.json``, ``bbox.geojson``; eo-learn < 1.0's pickled metadata
is refused (see :mod:`eossl.data.importers.eopatch`)."""

from __future__ import annotations

import gzip
import json
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from eossl.errors import ImportDataError

TYPES = ("data", "data_timeless", "mask", "mask_timeless")
"""The feature folders read (scalar, label and vector features are not)."""


@contextmanager
def open_array(path: Path) -> Any:
    """A file, decompressed on the fly if it ends in ``.gz``."""
    with gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb") as handle:
        yield handle


def array_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an ``.npy`` / ``.npy.gz`` file, read from its header."""
    try:
        if not path.name.endswith(".gz"):
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            return tuple(array.shape), array.dtype
        with open_array(path) as handle:
            version = np.lib.format.read_magic(handle)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(handle)
    except (ValueError, OSError, EOFError) as exc:
        raise ImportDataError(f"'{path}': not a readable .npy array ({exc})") from None
    if dtype.hasobject:
        raise ImportDataError(f"'{path}': holds Python objects (pickled), which eossl does not load")
    return tuple(shape), dtype


def load_array(path: Path) -> np.ndarray:
    """An ``.npy`` / ``.npy.gz`` array, never unpickling; errors name the file."""
    try:
        with open_array(path) as handle:
            return np.load(handle, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ImportDataError(f"'{path}': not a readable .npy array; truncated or not NumPy ({exc})") from None


def read_json(patch: Path, stem: str) -> tuple[Path, Any] | None:
    """``(file, content)`` of ``stem.json`` / ``.geojson`` (maybe ``.gz``) in ``patch``, else None."""
    for path in sorted(patch.glob(f"{stem}.*json*")):
        try:
            with open_array(path) as handle:
                return path, json.load(handle)
        except (ValueError, OSError, EOFError) as exc:
            raise ImportDataError(f"'{path}': not readable JSON ({exc})") from None
    return None


def refuse_pickled(patch: Path, stem: str) -> None:
    """Refuse eo-learn < 1.0's pickled ``stem`` (``timestamp.pkl``, ``bbox.pkl``, or the same without extension)."""
    for name in (stem, stem.rstrip("s")):
        for path in (patch / f"{name}.pkl", patch / f"{name}.pkl.gz", patch / name):
            if path.is_file():
                raise ImportDataError(
                    f"'{path}': a pickled {stem} (eo-learn < 1.0); eossl never unpickles files (they can run code). "
                    f"Re-save the EOPatch with eo-learn >= 1.0 (EOPatch.load(...).save(...)) to get {stem}.json"
                )


def read_timestamps(patch: Path) -> list[str]:
    """The patch's acquisition times as ISO strings (``timestamps.json``; older ``timestamp.json``)."""
    found = read_json(patch, "timestamps") or read_json(patch, "timestamp")
    if found is None:
        refuse_pickled(patch, "timestamps")
        raise ImportDataError(f"'{patch}': no timestamps.json, which the temporal features need")
    path, value = found
    try:
        return [datetime.fromisoformat(str(t)).isoformat() for t in value]
    except (TypeError, ValueError) as exc:
        raise ImportDataError(f"'{path}': expected a list of ISO timestamps ({exc})") from None


def read_bbox(patch: Path) -> tuple[str, tuple[float, float, float, float]] | None:
    """``(crs, (minx, miny, maxx, maxy))`` from ``bbox.geojson`` (None without one)."""
    found = read_json(patch, "bbox")
    if found is None:
        refuse_pickled(patch, "bbox")
        return None
    path, value = found
    try:
        geometry = value.get("geometry", value)  # a Feature or the bare geometry eo-learn writes
        crs = value.get("crs", geometry.get("crs", {})).get("properties", {}).get("name", "EPSG:4326")
        points = np.array(list(bbox_points(geometry["coordinates"])), float)
        return str(crs), (*points.min(0).tolist(), *points.max(0).tolist())
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ImportDataError(f"'{path}': expected a GeoJSON polygon with 'crs' and 'coordinates' ({exc})") from None


def bbox_points(coordinates: Any) -> Any:
    """The ``(x, y)`` pairs of nested GeoJSON coordinates."""
    if len(coordinates) >= 2 and all(isinstance(c, (int, float)) for c in coordinates[:2]):
        yield coordinates[:2]
        return
    for inner in coordinates:
        yield from bbox_points(inner)


def list_features(patch: Path) -> dict[str, Path]:
    """``type/NAME`` -> file of the raster features of a patch."""
    out: dict[str, Path] = {}
    for ftype in TYPES:
        for path in sorted((patch / ftype).glob("*")) if (patch / ftype).is_dir() else []:
            name, _, ext = path.name.partition(".")
            if ext in ("npy", "npy.gz"):
                out[f"{ftype}/{name}"] = path
    return out


def is_patch(folder: Path) -> bool:
    names = {p.name.split(".")[0] for p in folder.iterdir()} if folder.is_dir() else set()
    return bool(names & {*TYPES, "bbox", "timestamps", "timestamp"})
