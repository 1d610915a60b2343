"""Fast row reads of a store's sharded arrays, straight from the shard files, with every chunk verified.

:class:`~eossl.data.store.StoreWriter` writes every array as zarr v3 shards of ``shard_size`` rows,
each holding inner chunks of ``chunk_size`` rows, encoded with the ``bytes`` codec (little-endian),
optionally one blosc compressor and (stores written since chunk checksums) a ``crc32c`` checksum of
the encoded chunk. For that layout on a local disk, :class:`ShardReader` reads the rows of a batch by
reading each shard's index once (checking its crc32c, then caching it), reading the bytes of every
inner chunk the batch touches with one ``pread``, checking the chunk's crc32c and decompressing it
with blosc, where a whole chunk is wanted directly into the batch. That skips zarr's per-call
machinery (its event loop, thread hops and, for an integer selection, a selection per row), which
dominates batch reads of small samples.

Inner chunks of which a batch wants only some rows are decoded once and kept in a small per-process
cache (:data:`CHUNK_CACHE_BYTES`), so that the batches that share a chunk (as those of
:class:`eossl.data.sampling.ChunkShuffleSampler` do) decode it once.

Integrity: whatever cannot be read back as written (a chunk or index whose checksum does not match,
a blosc stream that does not decode, a shard cut short, a missing shard file, a chunk of the wrong
size) raises :class:`ChunkDamageError`, a :class:`~eossl.errors.StoreError` naming the store, the
array, the sample rows and the shard file (:func:`damage_error`); nothing is decoded into garbage.
Arrays with chunk checksums are written with every chunk present (zarr's ``write_empty_chunks``), so
there a missing shard file or index entry is damage too; arrays written before (no checksum) leave
out chunks and shards that hold only the fill value, which then read as the fill value, and their
chunks can only be checked for decodability. :meth:`ShardReader.scan` decodes every chunk (``eossl
data check``).

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import google_crc32c  # the crc32c zarr's Crc32cCodec computes
import numpy as np
import zarr
from numcodecs import blosc
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec
from zarr.storage import LocalStore

from eossl.data.store_location import ARRAYS_DIR
from eossl.errors import StoreError

CHUNK_CACHE_BYTES = 64 * 1024**2
"""Decoded inner chunks kept per array and process (a least-recently-used cache)."""

_EMPTY = 2**64 - 1
_INDEX_ENTRY_BYTES = 16  # offset and nbytes, two little-endian uint64
_CHECKSUM_BYTES = 4  # crc32c
_CRC32C_RESIDUE = 0x48674BC7  # the crc32c of any bytes followed by their own little-endian crc32c
_BLOSC_HEADER_BYTES = 16
DAMAGED = "the file is damaged"
MISSING = "the store is incomplete"


class ChunkDamageError(StoreError):
    """A chunk or shard of a store's array that cannot be read back as written.

    The message (see :func:`damage_error`) names the store, the array, the sample rows and the shard
    file; the same facts are attributes (``rows`` is ``(first, last)``, inclusive). It is made from the
    message alone too, so that it survives a data loader worker's re-raise.
    """

    def __init__(
        self,
        message: str,
        *,
        array: str = "",
        rows: tuple[int, int] = (0, -1),
        shard_file: str = "",
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.array, self.rows, self.shard_file, self.reason = array, rows, shard_file, reason


def rows_text(first: int, last: int) -> str:
    """``sample 7`` or ``samples 256..511`` (inclusive)."""
    return f"sample {first}" if first == last else f"samples {first}..{last}"


def damage_error(
    store: str, array: str, rows: tuple[int, int], shard_file: str, reason: str, diagnosis: str = DAMAGED
) -> ChunkDamageError:
    """The one-line error for rows ``rows`` (first, last) of ``array`` in ``shard_file`` that do not read back."""
    message = (
        f"store '{store}': array '{array}', {rows_text(*rows)} (shard file '{shard_file}'): {reason} — "
        f"{diagnosis}; re-import or re-download the store (run 'eossl data check {store}')"
    )
    return ChunkDamageError(message, array=array, rows=rows, shard_file=shard_file, reason=reason)


def shard_key(arr: zarr.Array, shard: int) -> str:
    """The key of shard ``shard`` (along the sample axis) of ``arr``, relative to the array (``c/1/0/0/0``)."""
    return arr.metadata.encode_chunk_key((shard,) + (0,) * (len(arr.shape) - 1))


def shard_label(arr: zarr.Array, shard: int) -> str:
    """Shard ``shard`` of ``arr`` as a path relative to its store folder (``arrays.zarr/s2/c/1/0/0/0``)."""
    return f"{ARRAYS_DIR}/{arr.path}/{shard_key(arr, shard)}" if arr.path else shard_key(arr, shard)


def has_chunk_checksums(arr: zarr.Array) -> bool:
    """Whether ``arr`` is sharded with a crc32c as the last codec of its inner chunks (and so, written by
    :class:`~eossl.data.store.StoreWriter`, has every chunk present)."""
    codecs = getattr(arr.metadata, "codecs", ())
    if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
        return False
    inner = codecs[0].codecs
    return bool(inner) and isinstance(inner[-1], Crc32cCodec)


@dataclass
class ScanResult:
    """What :meth:`ShardReader.scan` found: chunks decoded, damaged ones, and absent shards of an array
    without checksums (which hold the fill value, or were lost: there is no telling)."""

    chunks: int = 0
    damaged: list[ChunkDamageError] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)


class ShardReader:
    """Rows of one sharded array of a store on local disk (see the module docstring)."""

    def __init__(self, arr: zarr.Array, cache_bytes: int = CHUNK_CACHE_BYTES, store: str | None = None) -> None:
        """Use :meth:`open`, which checks that ``arr`` has the layout this reader reads."""
        sharding = arr.metadata.codecs[0]
        self.root = Path(arr.store.root) / arr.path
        self.store = store if store is not None else str(Path(arr.store.root))
        self.name = arr.path or self.root.name
        self.shape, self.dtype = tuple(arr.shape), np.dtype(arr.dtype)
        self.chunk_rows, self.shard_rows = int(sharding.chunk_shape[0]), int(arr.shards[0])
        self.chunks_per_shard = self.shard_rows // self.chunk_rows
        self.sample_shape = self.shape[1:]
        self.chunk_bytes = self.chunk_rows * int(np.prod(self.sample_shape, dtype=np.int64)) * self.dtype.itemsize
        self.checksummed = has_chunk_checksums(arr)
        self.compressed = any(isinstance(codec, BloscCodec) for codec in sharding.codecs)
        self.index_at_end = sharding.index_location.value == "end"
        self.fill_value = np.asarray(arr.metadata.fill_value, dtype=self.dtype)
        shards = range(-(-self.shape[0] // self.shard_rows))
        self._files = {shard: str(self.root / shard_key(arr, shard)) for shard in shards}
        self._labels = {shard: shard_label(arr, shard) for shard in shards}
        self.cache_bytes = cache_bytes
        self._init_caches()

    def _init_caches(self) -> None:
        self._indexes: dict[int, tuple[list[tuple[int, int]], int, int]] = {}  # entries, data start, data end
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
    def open(
        cls, arr: zarr.Array, cache_bytes: int = CHUNK_CACHE_BYTES, store: str | None = None
    ) -> ShardReader | None:
        """A reader of ``arr``, or ``None`` when it is not in the layout :class:`StoreWriter` writes.

        ``store`` names the store in error messages (default: the zarr store's folder).
        """
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
        rest = inner[1:-1] if len(inner) > 1 and isinstance(inner[-1], Crc32cCodec) else inner[1:]
        rest_ok = not rest or (len(rest) == 1 and isinstance(rest[0], BloscCodec))
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
        if not (plain and bytes_ok and rest_ok and index_ok and whole_samples and divides):
            return None
        return cls(arr, cache_bytes, store)

    @property
    def num_chunks(self) -> int:
        """Inner chunks holding rows of the array."""
        return -(-self.shape[0] // self.chunk_rows)

    def read(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` (any order, repeats allowed) as an array ``[len(rows), *sample_shape]``.

        Raises :class:`ChunkDamageError` when a chunk the rows lie in does not read back as written.
        """
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

    def scan(self) -> ScanResult:
        """Read and decode every chunk of the array (without the caches): what is damaged, what is absent.

        A shard whose file or index cannot be read counts once (its rows), not once per chunk.
        """
        result = ScanResult()
        scratch = np.empty((self.chunk_rows, *self.sample_shape), dtype=self.dtype)
        files: dict[int, int] = {}
        self._indexes.clear()
        try:
            for shard in self._files:
                chunks = range(shard * self.chunks_per_shard, min((shard + 1) * self.chunks_per_shard, self.num_chunks))
                result.chunks += len(chunks)
                try:
                    if self._index(shard, files) is None:
                        result.absent.append(self._labels[shard])
                        continue
                except ChunkDamageError as exc:
                    result.damaged.append(exc)
                    continue
                for chunk in chunks:
                    try:
                        self._decode(chunk, scratch, files)
                    except ChunkDamageError as exc:
                        result.damaged.append(exc)
        finally:
            self._indexes.clear()
            for fd in files.values():
                os.close(fd)
        return result

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

    def _damage(self, shard: int, chunk: int | None, reason: str, diagnosis: str = DAMAGED) -> ChunkDamageError:
        """The error for chunk ``chunk`` (``None``: the whole shard ``shard``)."""
        rows = self.chunk_rows if chunk is not None else self.shard_rows
        first = (chunk if chunk is not None else shard) * rows
        last = min(first + rows, self.shape[0]) - 1
        return damage_error(self.store, self.name, (first, last), self._labels[shard], reason, diagnosis)

    def _decode(self, chunk: int, dest: np.ndarray, files: dict[int, int]) -> None:
        """Decode inner chunk ``chunk`` into ``dest`` (C-contiguous, ``chunk_rows`` rows), verified."""
        shard, inner = divmod(chunk, self.chunks_per_shard)
        index = self._index(shard, files)
        if index is None:
            dest[...] = self.fill_value  # no shard file (a store without checksums): all fill value
            return
        entries, start, end = index
        offset, nbytes = entries[inner]
        if offset == _EMPTY and nbytes == _EMPTY:
            if self.checksummed:  # written with every chunk present
                raise self._damage(shard, chunk, "chunk missing from its shard's index", MISSING)
            dest[...] = self.fill_value  # never written: the fill value
            return
        if offset < start or offset + nbytes > end or (self.checksummed and nbytes < _CHECKSUM_BYTES):
            raise self._damage(shard, chunk, f"chunk lies outside the shard file (bytes {offset}..{offset + nbytes})")
        try:
            data = os.pread(files[shard], nbytes, offset)
        except OSError as exc:
            raise self._damage(shard, chunk, f"cannot read the shard file ({exc.strerror or exc})") from None
        if len(data) != nbytes:
            raise self._damage(shard, chunk, f"chunk cut short ({len(data)} of {nbytes} bytes)")
        payload = memoryview(data)
        if self.checksummed:
            if google_crc32c.value(data) != _CRC32C_RESIDUE:
                raise self._damage(shard, chunk, "chunk checksum mismatch")
            payload = payload[:-_CHECKSUM_BYTES]
        target = memoryview(dest.reshape(-1).view(np.uint8))
        if not self.compressed:
            if len(payload) != self.chunk_bytes:
                raise self._damage(shard, chunk, f"chunk holds {len(payload)} bytes, expected {self.chunk_bytes}")
            target[:] = payload
            return
        if (
            len(payload) < _BLOSC_HEADER_BYTES
            or int.from_bytes(payload[4:8], "little") != self.chunk_bytes  # the blosc header's sizes
            or int.from_bytes(payload[12:16], "little") != len(payload)
        ):
            raise self._damage(shard, chunk, f"chunk does not decode to {self.chunk_bytes} bytes (bad blosc header)")
        try:
            blosc.decompress(payload, target)
        except Exception as exc:  # numcodecs raises RuntimeError ("error during blosc decompression") and others
            raise self._damage(shard, chunk, f"chunk does not decompress (blosc: {exc})") from None

    def _index(self, shard: int, files: dict[int, int]) -> tuple[list[tuple[int, int]], int, int] | None:
        """``(offset, nbytes)`` of every inner chunk of shard ``shard`` and where chunk data may lie, verified
        (``None``: no shard file, all fill value, in an array without checksums)."""
        if shard not in files:
            try:
                files[shard] = os.open(self._files[shard], os.O_RDONLY)
            except FileNotFoundError:
                if self.checksummed:
                    raise self._damage(shard, None, "shard file missing", MISSING) from None
                return None
            except OSError as exc:
                raise self._damage(shard, None, f"cannot open the shard file ({exc.strerror or exc})") from None
        if shard not in self._indexes:
            self._indexes[shard] = self._read_index(shard, files[shard])
        return self._indexes[shard]

    def _read_index(self, shard: int, fd: int) -> tuple[list[tuple[int, int]], int, int]:
        size = _INDEX_ENTRY_BYTES * self.chunks_per_shard + _CHECKSUM_BYTES
        try:
            file_size = os.fstat(fd).st_size
            raw = os.pread(fd, size, file_size - size if self.index_at_end else 0) if file_size >= size else b""
        except OSError as exc:
            raise self._damage(shard, None, f"cannot read the shard file ({exc.strerror or exc})") from None
        if len(raw) != size:
            raise self._damage(shard, None, f"shard file cut short ({file_size} bytes, its index alone takes {size})")
        if google_crc32c.value(raw) != _CRC32C_RESIDUE:
            raise self._damage(shard, None, "shard index checksum mismatch (the shard was cut short or overwritten)")
        entries = np.frombuffer(raw, dtype="<u8", count=2 * self.chunks_per_shard).reshape(-1, 2).tolist()
        start, end = (0, file_size - size) if self.index_at_end else (size, file_size)
        return [(offset, nbytes) for offset, nbytes in entries], start, end


def _consecutive(values: np.ndarray) -> bool:
    """Whether ``values`` count up by one (``a, a + 1, ...``)."""
    return len(values) < 2 or bool((np.diff(values) == 1).all())
