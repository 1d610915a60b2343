"""StoreWriter: writes a sample store (layout and format: :mod:`eossl.data.store`) into a temporary sibling
folder, accumulating per-band statistics, and publishes it atomically when it closes, after checking
its declarations (targets, dates, pairs, split)."""

from __future__ import annotations

import os
import shutil
import uuid
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from eossl.data.band_stats import BandStatistics, degenerate_data_warnings
from eossl.data.modality import Modality
from eossl.data.splits import check_split_column
from eossl.data.store_location import ARRAYS_DIR, remove_abandoned
from eossl.data.targets import (
    Dates,
    Pair,
    Target,
    as_pair_dict,
    as_target_dict,
    check_declarations,
)

STORE_FORMAT_VERSION = 2
METADATA_FILE = "metadata.csv"
RESERVED_ATTRS = ("eossl_store_version", "num_samples", "modalities", "stats", "targets", "dates", "pairs", "split")
"""Attributes the writer sets itself; ``close(attrs=...)`` may not set them."""


from eossl.errors import StoreError  # noqa: E402  (re-exported)


class StoreWriter:
    """Write ``num_samples`` samples block by block, then ``close()`` to publish the store atomically."""

    def __init__(
        self,
        path: str | Path,
        num_samples: int,
        modalities: dict[str, Modality],
        extra_arrays: dict[str, tuple[tuple[int, ...], str]] | None = None,
        shard_size: int = 256,
        chunk_size: int = 1,  # one row per chunk: a random row decodes only itself (benchmarks/README.md)
        overwrite: bool = False,
        allow_fewer: bool = False,
    ) -> None:
        self.path = Path(path)
        self.removed_abandoned = _remove_abandoned(self.path)  # a killed writer's temporary folders
        if self.path.exists() and not overwrite:
            raise StoreError(
                f"store '{self.path}' already exists (use --overwrite, or overwrite=True in Python, to replace it)"
            )
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        self.num_samples, self.modalities, self.overwrite = num_samples, modalities, overwrite
        self.group = zarr.open_group(str(self.tmp / ARRAYS_DIR), mode="w")
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._dtypes: dict[str, str] = {}
        self._extra = dict(extra_arrays or {})
        self._shard, self._chunk = shard_size, chunk_size
        self._stats = {name: BandStatistics(m.num_bands) for name, m in modalities.items() if m.continuous}
        self._arrays: dict[str, zarr.Array] = {}  # as created: they write every chunk (write_empty_chunks)
        self._tables: list[pd.DataFrame] = []
        self._written = 0
        self._allow_fewer = allow_fewer  # num_samples is then an upper bound (an import that skips samples)
        self._files: dict[str, str] = {}

    def _array(self, name: str, sample_shape: tuple[int, ...], dtype: str) -> zarr.Array:
        if name not in self._shapes:
            self._shapes[name], self._dtypes[name] = sample_shape, dtype
            chunk = min(self._chunk, self.num_samples)
            shard = -(-min(self._shard, self.num_samples) // chunk) * chunk  # a whole number of chunks
            self._arrays[name] = self.group.create_array(
                name,
                shape=(self.num_samples, *sample_shape),
                dtype=dtype,
                chunks=(chunk, *sample_shape),
                shards=(shard, *sample_shape),
                compressors=[
                    BloscCodec(cname="lz4hc", clevel=5, shuffle="shuffle"),  # decodes ~4x faster than zstd
                    Crc32cCodec(),  # every chunk verified on read (eossl.data.shards)
                ],
                config={"write_empty_chunks": True},  # every chunk present: a missing one is damage
            )
        elif sample_shape != self._shapes[name]:
            raise StoreError(f"array '{name}': sample shape {sample_shape} differs from earlier {self._shapes[name]}")
        return self._arrays[name]

    def write(self, arrays: dict[str, np.ndarray], table: pd.DataFrame) -> None:
        """Append a block of samples: every array must have ``len(table)`` rows."""
        n = len(table)
        if self._written + n > self.num_samples:
            raise StoreError(f"writing {n} samples after {self._written} exceeds the declared {self.num_samples}")
        for name, values in arrays.items():
            if len(values) != n:
                raise StoreError(f"array '{name}' has {len(values)} rows but the table has {n}")
            if name in self.modalities:
                modality = self.modalities[name]
                if values.ndim != 4 or values.shape[1] != modality.num_bands:
                    raise StoreError(
                        f"modality '{name}' expects [N, {modality.num_bands}, H, W] "
                        f"(bands {', '.join(modality.bands)}), got shape {values.shape}"
                    )
                dtype = modality.dtype
                if name in self._stats:
                    self._stats[name].update(values, modality.nodata)
            elif name in self._extra:
                dtype = self._extra[name][1]
            else:
                raise StoreError(f"array '{name}' is neither a declared modality nor an extra array")
            self._array(name, tuple(values.shape[1:]), dtype)[self._written : self._written + n] = values.astype(dtype)
        self._tables.append(table.reset_index(drop=True))
        self._written += n

    def add_file(self, name: str, text: str) -> None:
        """A text file (e.g. the import report) published with the store, at ``STORE/name``."""
        if "/" in name or name in (METADATA_FILE, ARRAYS_DIR):
            raise StoreError(f"store file name {name!r} must be a plain file name other than {METADATA_FILE}")
        self._files[name] = text

    @property
    def written(self) -> int:
        """Samples written so far."""
        return self._written

    def close(
        self,
        attrs: dict[str, Any] | None = None,
        *,
        targets: dict[str, Target] | list[Target] | None = None,
        dates: Dates | None = None,
        pairs: list[Pair] | None = None,
        split: str | None = None,
    ) -> Path:
        """Check completeness and the declarations, write statistics and metadata, and move the store into place.

        ``targets``, ``dates`` and ``pairs`` declare what the store holds (see :mod:`eossl.data.targets`);
        each is checked against what was written (columns and arrays exist, array shapes fit the kinds,
        strata and pair targets are declared). ``split`` names a table column holding the dataset's
        official split (``train``/``val``/``test``; see :func:`eossl.data.splits.official_splits`). A
        writer made with ``allow_fewer`` publishes the samples written so far (at least one); otherwise,
        and on a bad declaration, nothing is
        published and :class:`StoreError` says what does not fit. ``attrs`` are free-form attributes
        (e.g. ``class_names``); they may not set the writer's own keys (``RESERVED_ATTRS``).
        """
        if self._allow_fewer and 0 < self._written < self.num_samples:
            self.num_samples = self._written
            for name in self._shapes:
                self._arrays[name].resize((self._written, *self._shapes[name]))
        if self._written != self.num_samples or self._written == 0:
            self.abort()
            raise StoreError(f"store '{self.path}' got {self._written} of {self.num_samples} declared samples")
        table = pd.concat(self._tables, ignore_index=True)
        table.insert(0, "sample_id", np.arange(len(table)))
        try:
            reserved = sorted(set(attrs or {}) & set(RESERVED_ATTRS))
            if reserved:
                raise StoreError(
                    f"store '{self.path}': attrs {reserved} are set by the writer; declare targets, dates and "
                    "pairs with close(targets=..., dates=..., pairs=...)"
                )
            declared = as_target_dict(targets, str(self.path))
            pair_map = as_pair_dict(pairs, str(self.path))
            if dates is not None and not isinstance(dates, Dates):
                raise StoreError(f"store '{self.path}': dates must be a Dates declaration, got {dates!r}")
            written = {name: (shape, self._dtypes[name]) for name, shape in self._shapes.items()}
            check_declarations(
                str(self.path), declared, dates, pair_map, table=table, arrays=written, modalities=self.modalities
            )
            if split is not None:
                check_split_column(str(self.path), table, split)
            if self.path.exists() and not self.overwrite:  # another writer published it meanwhile
                raise StoreError(
                    f"store '{self.path}' appeared while this writer wrote it (another import or synth?); it was "
                    "left as it is (use --overwrite, or overwrite=True in Python, to replace it)"
                )
        except BaseException:
            self.abort()
            raise
        stats = {name: s.result(self.modalities[name]) for name, s in self._stats.items()}
        for message in degenerate_data_warnings(str(self.path), self.modalities, self._stats, stats):
            warnings.warn(message, UserWarning, stacklevel=2)
        table.to_csv(self.tmp / METADATA_FILE, index=False)
        for name, text in self._files.items():
            (self.tmp / name).write_text(text, encoding="utf-8")
        self.group.attrs.update(
            {
                "eossl_store_version": STORE_FORMAT_VERSION,
                "num_samples": self.num_samples,
                "modalities": {name: asdict(m) for name, m in self.modalities.items()},
                "stats": stats,
                "targets": {name: t.to_json() for name, t in declared.items()},
                "dates": None if dates is None else dates.to_json(),
                "pairs": [p.to_json() for p in pair_map.values()],
                "split": split,
                **(attrs or {}),
            }
        )
        with warnings.catch_warnings():  # "not part of the v3 spec": eossl reads it, others read the arrays
            warnings.simplefilter("ignore", UserWarning)
            zarr.consolidate_metadata(str(self.tmp / ARRAYS_DIR))  # one metadata read, no listing (HTTP stores)
        if self.path.exists():
            trash = self.path.with_name(f".{self.path.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(self.path, trash)
            os.replace(self.tmp, self.path)
            shutil.rmtree(trash)
        else:
            os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Remove the unpublished temporary store."""
        shutil.rmtree(self.tmp, ignore_errors=True)


def _remove_abandoned(path: Path) -> list[Path]:
    """Remove the temporary folders of writers of ``path`` that were killed (their process is gone; see
    :func:`~eossl.data.store_location.remove_abandoned`) and say so in a warning; returns them."""
    before = set(path.parent.glob(f".{path.name}.tmp-*"))
    if not before:
        return []
    remove_abandoned(path)
    removed = sorted(tmp for tmp in before if not tmp.exists())
    if removed:
        warnings.warn(
            f"store '{path}': removed {len(removed)} temporary folder(s) left by interrupted writers "
            f"(their process is gone): {', '.join(tmp.name for tmp in removed)}",
            UserWarning,
            stacklevel=3,
        )
    return removed
