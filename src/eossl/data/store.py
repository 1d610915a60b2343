"""SampleStore: chunked, compressed arrays per modality plus a metadata/label table, on disk.

Layout of a store folder ::

    STORE/arrays.zarr/          zarr v3 group; its attributes hold the format version, modalities,
                                per-band statistics, the declarations (targets, dates, pairs) and
                                free-form attributes such as class names
    STORE/arrays.zarr/<array>/  one array per modality or target, shape [N, ...], chunks of ``chunk_size`` samples
                                packed into shards of ``shard_size`` samples (random access without
                                thousands of tiny files); every chunk is written and carries a crc32c
                                checksum (stores written before checksums read as before)
    STORE/metadata.csv          one row per sample: location, season, lat/lon, labels, nuisance factors
    STORE/import_report.json    for imported stores: source, options, counts, skipped files and why, throughput

Stores are written into a temporary sibling folder and renamed into place when complete, so a reader
never sees a half-written store. Per-band mean/std (and NaN counts) of continuous modalities are
accumulated while writing and kept in the attributes.

Format v2 declares what a store holds (:mod:`eossl.data.targets`), checked when the writer closes:

- ``targets``: ``{name: Target.to_json()}``, each target's kind and source (a table column or an array);
- ``dates``: ``Dates.to_json()`` or null, which rows are several acquisitions of one place;
- ``pairs``: ``[Pair.to_json(), ...]``, two modalities that are two dates of one place and their change target;
- ``split``: the table column holding the dataset's official split (``train``/``val``/``test``), or null
  (split by place).

A store is read from a folder or from a URL (``s3://``, ``gs://``, ``https://``) through fsspec; the
writer consolidates the zarr metadata so a remote store is opened with one metadata read.

Reads verify what they decode: a damaged or missing shard file raises a :class:`StoreError` naming the
store, the array, the sample rows and the shard file (:mod:`eossl.data.shards`), through the fast path
and through zarr alike; ``eossl data check`` (:mod:`eossl.data.check`) lists every damaged chunk.

Reading a v1 store upgrades it in memory (nothing is written). v1 stores were written only by the
synthetic generator, whose targets had fixed names; they are declared from what the store holds, each
only when its column or array exists:

- ``label``: single-label, column ``label``, class names from the attribute ``class_names``;
- ``multilabel``: multi-label, array ``multilabel`` (class names as ``label``'s when their number fits);
- ``mask``: segmentation, array ``lulc`` (same class names), strata ``multilabel``;
- ``tree_cover``: regression, column ``tree_cover``, strata ``label``;
- dates: ``Dates("location_id", "season")`` when the column ``location_id`` exists (time only when
  ``season`` exists); no pairs.

A store of a newer format than :data:`STORE_FORMAT_VERSION` is refused (upgrade eossl to read it).
The writer is :class:`eossl.data.store_writer.StoreWriter` (re-exported here).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr

from eossl.data.modality import Modality
from eossl.data.shards import (
    MISSING,
    ChunkDamageError,
    ShardReader,
    damage_error,
    has_chunk_checksums,
    shard_key,
    shard_label,
)
from eossl.data.store_location import ARRAYS_DIR, remote_arrays, store_url
from eossl.data.store_v1 import upgrade_v1
from eossl.data.store_writer import METADATA_FILE, STORE_FORMAT_VERSION, StoreWriter
from eossl.data.targets import (
    TARGET_KINDS,
    Dates,
    Pair,
    Target,
    as_pair_dict,
)
from eossl.errors import StoreError
from eossl.io import write_text_atomic

MAX_SLICE_RUNS = 64
"""Read through zarr, rows in fewer inner chunks than this are read one slice per chunk (else one selection)."""

__all__ = ["METADATA_FILE", "STORE_FORMAT_VERSION", "SampleStore", "StoreError", "StoreWriter", "write_json_atomic"]


class SampleStore:
    """Read access to a store written by :class:`StoreWriter`."""

    def __init__(self, path: str | Path) -> None:
        if isinstance(path, str) and path.startswith("file://"):
            path = path[len("file://") :]
        self.url = store_url(path)
        self.path: Path | str = Path(path) if self.url is None else self.url  # a local folder, or the URL
        if self.url is None:
            if not self.path.exists():
                raise StoreError(f"store '{self.path}' does not exist (create one with 'eossl data synth {self.path}')")
            location: Any = str(self.path / ARRAYS_DIR)
        else:
            location = remote_arrays(self.url)
        try:
            self.group = zarr.open_group(location, mode="r")
        except Exception as exc:  # zarr raises several types for "not a group"
            raise StoreError(f"'{self.path}' is not an eossl sample store (no zarr group): {exc}") from exc
        attrs = dict(self.group.attrs)
        if "eossl_store_version" not in attrs:
            raise StoreError(f"'{self.path}' is a zarr group but not an eossl store (no 'eossl_store_version')")
        version = attrs["eossl_store_version"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise StoreError(f"store '{self.path}' has an unknown format version {version!r} (expected 1 .. 2)")
        if version > STORE_FORMAT_VERSION:
            raise StoreError(
                f"store '{self.path}' has format v{version}; this eossl reads up to v{STORE_FORMAT_VERSION}: "
                "upgrade eossl"
            )
        self.attrs = attrs
        self.format_version: int = version  # as read on disk
        self.modalities = {
            name: Modality(**{k: tuple(v) if isinstance(v, list) else v for k, v in m.items()})
            for name, m in attrs["modalities"].items()
        }
        self.stats: dict[str, dict[str, list[float]]] = attrs.get("stats", {})
        self.split: str | None = attrs.get("split")  # a table column holding the dataset's official split
        self.table = self._read_table()
        if len(self.table) != attrs["num_samples"]:
            raise StoreError(
                f"'{self.path}/{METADATA_FILE}' has {len(self.table)} rows, the store declares {attrs['num_samples']}"
            )
        # declared targets, dates (linked acquisitions) and change pairs; a v1 store's are upgraded in memory
        self.targets, self.dates, self.pairs = upgrade_v1(self) if version == 1 else self._read_declarations()

    def _read_table(self) -> pd.DataFrame:
        if self.url is None:
            return pd.read_csv(self.path / METADATA_FILE)
        import fsspec

        try:
            with fsspec.open(f"{self.url}/{METADATA_FILE}", "rb") as f:
                return pd.read_csv(f)
        except (OSError, ValueError) as exc:
            raise StoreError(f"store '{self.url}': cannot read {METADATA_FILE}: {exc}") from None

    def _read_declarations(self) -> tuple[dict[str, Target], Dates | None, dict[str, Pair]]:
        attrs = self.attrs
        try:
            targets = {name: Target.from_json(name, t) for name, t in (attrs.get("targets") or {}).items()}
            dates = None if attrs.get("dates") is None else Dates.from_json(attrs["dates"])
            pairs = as_pair_dict([Pair.from_json(p) for p in attrs.get("pairs") or []])
        except (StoreError, AttributeError) as exc:
            raise StoreError(f"store '{self.path}' has a bad declaration: {exc}") from None
        return targets, dates, pairs

    def __len__(self) -> int:
        return len(self.table)

    @property
    def arrays(self) -> list[str]:
        """Names of the store's arrays, sorted."""
        return sorted(name for name, _ in self.group.arrays())

    @property
    def class_names(self) -> tuple[str, ...]:
        """The attribute ``class_names``, else the class names of the first single-label target (else ``()``)."""
        if self.attrs.get("class_names"):
            return tuple(self.attrs["class_names"])
        single = self.targets_of_kind("single-label")
        return single[0].class_names if single else ()

    def targets_of_kind(self, kind: str) -> list[Target]:
        """Declared targets of one kind, in declaration order."""
        if kind not in TARGET_KINDS:
            raise StoreError(f"unknown target kind {kind!r} (known: {', '.join(TARGET_KINDS)})")
        return [t for t in self.targets.values() if t.kind == kind]

    def target(self, name: str) -> Target:
        """The declared target ``name``; :class:`StoreError` naming the declared ones if there is none."""
        if name not in self.targets:
            declared = ", ".join(f"{t.name} ({t.kind})" for t in self.targets.values()) or "none"
            raise StoreError(f"store '{self.path}' declares no target '{name}' (it declares: {declared})")
        return self.targets[name]

    def array(self, name: str) -> zarr.Array:
        """One array of the store (a modality or a target's array)."""
        if name not in self.group:
            raise StoreError(f"store '{self.path}' has no array '{name}' (it has: {', '.join(self.arrays)})")
        return self.group[name]

    fast_reads: bool = True
    """Read rows straight from the shard files where an array's layout allows (:mod:`eossl.data.shards`)."""

    def read(self, name: str, indices: np.ndarray | slice | None = None) -> np.ndarray:
        """Rows of one array; ``indices`` may be unsorted and repeated.

        Arrays in the layout :class:`StoreWriter` writes, on a local disk, are read by
        :class:`~eossl.data.shards.ShardReader` (each inner chunk a batch touches is read and decoded
        once); others through zarr, one slice per inner chunk (zarr's integer selection is far slower).
        Either way rows that do not read back as written (a damaged or missing shard file) raise
        :class:`~eossl.data.shards.ChunkDamageError`, a :class:`StoreError` naming the store, the array,
        the sample rows and the shard file.
        """
        reader = self._reader(name) if self.fast_reads else None
        if reader is not None:
            if indices is None or isinstance(indices, slice):
                indices = np.arange(reader.shape[0])[slice(None) if indices is None else indices]
            return reader.read(np.asarray(indices))
        arr = self.array(name)
        if indices is None or isinstance(indices, slice):
            key = slice(None) if indices is None else indices
            return self._through_zarr(name, arr, np.arange(arr.shape[0])[key], lambda: arr[key])
        indices = np.asarray(indices)
        n = arr.shape[0]
        if len(indices) and (indices.min() < -n or indices.max() >= n):
            raise IndexError(f"rows out of range for an array of {n} rows")
        if len(indices) and indices.min() < 0:
            indices = np.where(indices < 0, indices + n, indices)
        order = np.argsort(indices, kind="stable")
        ordered = indices[order]

        def fetch() -> np.ndarray:
            chunk = ordered // arr.chunks[0]
            breaks = np.flatnonzero(np.diff(chunk)) + 1  # the rows of each inner chunk: one slice, one decode
            if len(ordered) and len(breaks) < MAX_SLICE_RUNS:
                return np.concatenate([arr[run[0] : run[-1] + 1][run - run[0]] for run in np.split(ordered, breaks)])
            return arr.get_orthogonal_selection((ordered,))

        rows = self._through_zarr(name, arr, ordered, fetch)
        out = np.empty_like(rows)
        out[order] = rows
        return out

    def _through_zarr(
        self, name: str, arr: zarr.Array, rows: np.ndarray, fetch: Callable[[], np.ndarray]
    ) -> np.ndarray:
        """``fetch()`` (a zarr read of ``rows`` of array ``name``), its failures as :class:`ChunkDamageError`.

        zarr reads a missing shard file as the fill value; in arrays with chunk checksums (every chunk
        written) the shard files ``rows`` lie in are checked to exist first, each once.
        """
        if has_chunk_checksums(arr) and len(rows):
            present: set[int] = self.__dict__.setdefault("_present_shards", {}).setdefault(name, set())
            for shard in np.unique(np.asarray(rows) // arr.shards[0]).tolist():
                if shard not in present:
                    if not shard_exists(arr, shard):
                        raise damage_error(
                            str(self.path), name, _rows_of(arr, shard, arr.shards[0]), shard_label(arr, shard),
                            "shard file missing or empty", MISSING,
                        )  # fmt: skip
                    present.add(shard)
        try:
            return fetch()
        except Exception as exc:  # zarr and numcodecs raise ValueError, RuntimeError, ... for damaged bytes
            raise locate_damage(str(self.path), name, arr, rows, exc) from exc

    def _reader(self, name: str) -> ShardReader | None:
        """The fast reader of array ``name`` (``None`` where its layout or location has none), made once."""
        readers: dict[str, ShardReader | None] = self.__dict__.setdefault("_readers", {})
        if name not in readers:
            readers[name] = ShardReader.open(self.array(name), store=str(self.path))
        return readers[name]

    def summary(self) -> str:
        """Arrays with dtypes and shapes, per-band statistics and non-finite counts, as text."""
        lines = [f"store {self.path}: {len(self)} samples, format v{self.format_version}"]
        for name in self.arrays:
            arr = self.group[name]
            lines.append(f"  {name:<10} {arr.dtype!s:<8} shape {tuple(arr.shape)}")
        for name, st in self.stats.items():
            bands = self.modalities[name].bands
            cells = ", ".join(f"{b}={m:.4g}±{s:.3g}" for b, m, s in zip(bands, st["mean"], st["std"], strict=True))
            lines.append(f"  stats {name}: {cells}")
            if any(st["nonfinite"]):
                lines.append(f"  non-finite values in {name}: {dict(zip(bands, st['nonfinite'], strict=True))}")
        return "\n".join(lines)


def _rows_of(arr: zarr.Array, block: int, rows: int) -> tuple[int, int]:
    """First and last row of block ``block`` of ``rows`` rows (a chunk or a shard) of ``arr``."""
    return block * rows, min((block + 1) * rows, arr.shape[0]) - 1


def shard_exists(arr: zarr.Array, shard: int) -> bool:
    """Whether shard ``shard`` (along the sample axis) of ``arr`` has a file that is not empty (zarr reads
    an empty one as all fill value too), in any zarr store, local or remote."""
    from zarr.core.sync import sync

    try:
        return bool(sync(arr.store.getsize(f"{arr.path}/{shard_key(arr, shard)}")) > 0)
    except FileNotFoundError:
        return False


def decode_reason(exc: BaseException) -> str:
    """What a zarr or numcodecs error says about the bytes it read, in a few words."""
    text = str(exc)
    if "checksum" in text.lower():
        return "checksum mismatch (chunk or shard index)"
    if "blosc" in text.lower():
        return "chunk does not decompress (blosc)"
    return f"cannot decode ({type(exc).__name__}: {text[:160]})"


def locate_damage(store: str, name: str, arr: zarr.Array, rows: np.ndarray, exc: BaseException) -> ChunkDamageError:
    """The damaged inner chunk among those holding ``rows`` of ``arr``, found by reading each through zarr
    after a read of them failed with ``exc``; where each reads on its own, ``exc`` for all of ``rows``."""
    rows = np.asarray(rows)
    if not len(rows):
        rows = np.arange(arr.shape[0])
    chunk_rows = arr.chunks[0]
    for chunk in np.unique(rows // chunk_rows).tolist():
        first, last = _rows_of(arr, chunk, chunk_rows)
        try:
            arr[first : last + 1]
        except Exception as inner:
            shard = first // arr.shards[0] if arr.shards else first // chunk_rows
            return damage_error(store, name, (first, last), shard_label(arr, shard), decode_reason(inner))
    first, last = int(rows.min()), int(rows.max())
    shard = first // (arr.shards[0] if arr.shards else chunk_rows)
    return damage_error(
        store, name, (first, last), shard_label(arr, shard), decode_reason(exc), "the store may be damaged"
    )


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(payload, indent=2))
