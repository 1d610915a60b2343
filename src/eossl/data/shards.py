"""Fast row reads of a store's sharded arrays, straight from the shard files.

:class:`~eossl.data.store.StoreWriter` writes every array as zarr v3 shards of ``shard_size`` rows,
each holding inner chunks of ``chunk_size`` rows, encoded with the ``bytes`` codec (little-endian) and
optionally one blosc compressor. For that layout on a local disk, :class:`ShardReader` reads the rows of
a batch by reading each shard's index once (then caching it), reading the bytes of every inner chunk the
batch touches with one ``pread`` and decompressing them with blosc, where a whole chunk is wanted
directly into the batch. That skips zarr's per-call machinery (its event loop, thread hops and, for an
integer selection, a selection per row), which dominates batch reads of small samples.

Inner chunks of which a batch wants only some rows are decoded once and kept in a small per-process
cache (:data:`CHUNK_CACHE_BYTES`), so that the batches that share a chunk (as those of
:class:`eossl.data.sampling.ChunkShuffleSampler` do) decode it once.

:meth:`ShardReader.open` returns ``None`` for any other layout (another store, other codecs, a
big-endian machine); :meth:`SampleStore.read <eossl.data.store.SampleStore.read>` then reads through
zarr. The shard format is the zarr v3 ``sharding_indexed`` codec: the encoded inner chunks, and an
index of ``(offset, nbytes)`` uint64 pairs per inner chunk (``2**64 - 1`` for a chunk never written,
which holds the fill value) followed by a crc32c checksum, at the end of the shard (or its start).
"""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from numcodecs import blosc
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec
from zarr.storage import LocalStore

CHUNK_CACHE_BYTES = 64 * 1024**2
"""Decoded inner chunks kept per array and process (a least-recently-used cache)."""

_EMPTY = 2**64 - 1
_INDEX_ENTRY_BYTES = 16  # offset and nbytes, two little-endian uint64
_CHECKSUM_BYTES = 4  # crc32c


class ShardReader:
    """Rows of one sharded array of a store on local disk (see the module docstring)."""

    def __init__(self, arr: zarr.Array, cache_bytes: int = CHUNK_CACHE_BYTES) -> None:
        """Use :meth:`open`, which checks that ``arr`` has the layout this reader reads."""
        sharding = arr.metadata.codecs[0]
        self.root = Path(arr.store.root) / arr.path
        self.shape, self.dtype = tuple(arr.shape), np.dtype(arr.dtype)
        self.chunk_rows, self.shard_rows = int(sharding.chunk_shape[0]), int(arr.shards[0])
        self.chunks_per_shard = self.shard_rows // self.chunk_rows
        self.sample_shape = self.shape[1:]
        self.chunk_bytes = self.chunk_rows * int(np.prod(self.sample_shape, dtype=np.int64)) * self.dtype.itemsize
        self.compressed = len(sharding.codecs) == 2
        self.index_at_end = sharding.index_location.value == "end"
        self.fill_value = np.asarray(arr.metadata.fill_value, dtype=self.dtype)
        self._files = {shard: str(self.root / arr.metadata.encode_chunk_key((shard,) + (0,) * len(self.sample_shape)))
                       for shard in range(-(-self.shape[0] // self.shard_rows))}  # fmt: skip
        self.cache_bytes = cache_bytes
        self._init_caches()

    def _init_caches(self) -> None:
        self._indexes: dict[int, list[tuple[int, int]]] = {}
        self._chunks: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_indexes", "_chunks", "_lock"):
            del state[name]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_caches()

    @classmethod
    def open(cls, arr: zarr.Array, cache_bytes: int = CHUNK_CACHE_BYTES) -> ShardReader | None:
        """A reader of ``arr``, or ``None`` when it is not in the layout :class:`StoreWriter` writes."""
        codecs = arr.metadata.codecs
        if (
            getattr(arr.metadata, "zarr_format", None) != 3
            or sys.byteorder != "little"
            or not isinstance(arr.store, LocalStore)
            or len(arr.shape) < 1
            or len(codecs) != 1
            or not isinstance(codecs[0], ShardingCodec)
        ):
            return None
        sharding = codecs[0]
        inner, index_codecs = list(sharding.codecs), list(sharding.index_codecs)
        shard_shape, chunk_shape = tuple(arr.shards or ()), tuple(sharding.chunk_shape)
        dtype = np.dtype(arr.dtype)
        little = dtype.byteorder in ("<", "=", "|")  # native is little here (checked above)
        bytes_ok = bool(inner) and isinstance(inner[0], BytesCodec)
        if bytes_ok and dtype.itemsize > 1:
            bytes_ok = inner[0].endian is not None and inner[0].endian.value == "little"
        blosc_ok = len(inner) == 1 or (len(inner) == 2 and isinstance(inner[1], BloscCodec))
        index_ok = (
            len(index_codecs) == 2
            and isinstance(index_codecs[0], BytesCodec)
            and index_codecs[0].endian is not None
            and index_codecs[0].endian.value == "little"
            and isinstance(index_codecs[1], Crc32cCodec)
        )
        whole_samples = shard_shape[1:] == tuple(arr.shape[1:]) and chunk_shape[1:] == tuple(arr.shape[1:])
        plain = dtype.kind in "biufc" and little
        divides = bool(shard_shape) and shard_shape[0] % chunk_shape[0] == 0
        if not (plain and bytes_ok and blosc_ok and index_ok and whole_samples and divides):
            return None
        return cls(arr, cache_bytes)

    def read(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` (any order, repeats allowed) as an array ``[len(rows), *sample_shape]``."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        n = self.shape[0]
        if len(rows) and (rows.min() < -n or rows.max() >= n):
            raise IndexError(f"rows out of range for an array of {n} rows")
        rows = np.where(rows < 0, rows + n, rows)
        out = np.empty((len(rows), *self.sample_shape), dtype=self.dtype)
        if not len(rows):
            return out
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        starts = np.flatnonzero(np.diff(ordered // self.chunk_rows, prepend=-1))
        groups = list(zip(starts.tolist(), [*starts[1:].tolist(), len(rows)], strict=True))
        self._fill(out, ordered, order, groups)
        return out

    def _fill(self, out: np.ndarray, ordered: np.ndarray, order: np.ndarray, groups: list[tuple[int, int]]) -> None:
        """Decode into ``out[order[a:b]]`` the rows ``ordered[a:b]`` of each group ``(a, b)`` (rows of one chunk)."""
        files: dict[int, int] = {}
        try:
            for start, stop in groups:
                chunk = int(ordered[start]) // self.chunk_rows
                first = chunk * self.chunk_rows
                within, targets = ordered[start:stop] - first, order[start:stop]
                whole = stop - start == self.chunk_rows and first + self.chunk_rows <= self.shape[0] and within[0] == 0
                if whole and _consecutive(within) and _consecutive(targets):  # the chunk's rows, in order
                    self._decode(chunk, out[targets[0] : targets[0] + self.chunk_rows], files)
                else:
                    out[targets] = self._cached(chunk, files)[within]
        finally:
            for fd in files.values():
                os.close(fd)

    def _cached(self, chunk: int, files: dict[int, int]) -> np.ndarray:
        """The decoded inner chunk ``chunk`` (``[chunk_rows, *sample_shape]``), from the cache or decoded into it."""
        with self._lock:
            data = self._chunks.get(chunk)
            if data is not None:
                self._chunks.move_to_end(chunk)
                return data
        data = np.empty((self.chunk_rows, *self.sample_shape), dtype=self.dtype)
        self._decode(chunk, data, files)
        if self.chunk_bytes <= self.cache_bytes:
            with self._lock:
                self._chunks[chunk] = data
                while len(self._chunks) * self.chunk_bytes > self.cache_bytes:
                    self._chunks.popitem(last=False)
        return data

    def _decode(self, chunk: int, dest: np.ndarray, files: dict[int, int]) -> None:
        """Decode inner chunk ``chunk`` into ``dest`` (C-contiguous, ``chunk_rows`` rows)."""
        shard, inner = divmod(chunk, self.chunks_per_shard)
        index = self._index(shard, files)
        offset, nbytes = (_EMPTY, 0) if index is None else index[inner]
        if offset == _EMPTY:
            dest[...] = self.fill_value  # never written: the fill value
            return
        data = os.pread(files[shard], nbytes, offset)
        if len(data) != nbytes:
            raise OSError(f"shard {self._path(shard)}: chunk {inner} is cut short ({len(data)} of {nbytes} bytes)")
        target = memoryview(dest.reshape(-1).view(np.uint8))
        if not self.compressed:
            target[:] = data
        elif int.from_bytes(data[4:8], "little") != self.chunk_bytes:  # the blosc header's uncompressed size
            raise OSError(f"shard {self._path(shard)}: chunk {inner} does not decode to {self.chunk_bytes} bytes")
        else:
            blosc.decompress(data, target)

    def _path(self, shard: int) -> str:
        return self._files[shard]

    def _index(self, shard: int, files: dict[int, int]) -> list[tuple[int, int]] | None:
        """``(offset, nbytes)`` of every inner chunk of shard ``shard`` (``None``: no shard file, all fill)."""
        if shard not in files:
            try:
                files[shard] = os.open(self._path(shard), os.O_RDONLY)
            except FileNotFoundError:
                return None
        if shard not in self._indexes:
            size = _INDEX_ENTRY_BYTES * self.chunks_per_shard
            where = os.fstat(files[shard]).st_size - size - _CHECKSUM_BYTES if self.index_at_end else 0
            raw = os.pread(files[shard], size, where)
            if len(raw) != size:
                raise OSError(f"shard {self._path(shard)} is too short for its index")
            entries = np.frombuffer(raw, dtype="<u8").reshape(self.chunks_per_shard, 2).tolist()
            self._indexes[shard] = [(offset, nbytes) for offset, nbytes in entries]
        return self._indexes[shard]


def _consecutive(values: np.ndarray) -> bool:
    """Whether ``values`` count up by one (``a, a + 1, ...``)."""
    return len(values) < 2 or bool((np.diff(values) == 1).all())
