"""Chunk-aware shuffling: random batches whose reads are of contiguous store rows.

A store keeps each array in chunks of ``chunk_size`` consecutive rows, and reading one row decodes its
whole chunk. A full shuffle (:class:`torch.utils.data.RandomSampler`) therefore decodes about
``chunk_size`` rows per row it delivers. :class:`ChunkShuffleSampler` shuffles the way WebDataset and
LitData do instead: every epoch it shuffles the order of the chunks, fills a buffer of several chunks,
shuffles the samples within the buffer and cuts it into batches. Each batch then mixes the rows of
several chunks, and the batches of one buffer together read each of its chunks once (the store's
reader keeps the chunks a batch reads only partly, see :mod:`eossl.data.shards`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

BUFFER_BATCHES = 4
"""Default buffer: at least this many batches' worth of samples (rounded up to whole chunks)."""


class ChunkShuffleSampler(Sampler[list[int]]):
    """Batches of positions into ``rows`` (a dataset's store rows), shuffled chunk by chunk.

    Every epoch, with a generator seeded from ``(seed, epoch)``:

    1. the chunks (runs of ``chunk_size`` consecutive store rows, ``row // chunk_size``, intersected
       with ``rows``) are put in a random order;
    2. chunks are taken in that order into a buffer until it holds at least ``buffer_chunks *
       chunk_size`` samples; the buffer's samples are shuffled and cut into batches of ``batch_size``;
       the samples too few for another batch stay in the buffer for the next fill;
    3. at the end the rest of the buffer is shuffled into the last batches; the last one, if partial,
       is dropped when ``drop_last``.

    Every position appears exactly once per epoch (``drop_last`` leaves out fewer than ``batch_size``).
    The order is the same for the same ``seed`` and epoch and differs between epochs. The epoch is set
    by :meth:`set_epoch` (Lightning calls it before every epoch) and otherwise counts the iterations.
    Within a batch the positions are in random order; the store's reader sorts them, so that a
    batch's rows of one chunk are read as one run.

    What it gives up compared with a full shuffle: a batch holds the rows of a few chunks only (about
    ``buffer_chunks``, at most ``batch_size``); rows of one chunk (often neighbours in the source, e.g.
    the dates of one place) land in the same batch far more often (each pair with probability about
    ``batch_size / buffer size`` instead of ``batch_size / len(rows)``); and a row can only be near rows
    of its buffer in the epoch's order (an early chunk cannot share a batch with a late one). The order
    of chunks and of samples within each buffer is uniformly random. With ``chunk_size=1`` (the store
    writer's default) it gives up nothing: the epoch's order is a uniformly random permutation.
    """

    def __init__(
        self,
        rows: np.ndarray,
        chunk_size: int,
        batch_size: int,
        *,
        buffer_chunks: int | None = None,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        if chunk_size < 1 or batch_size < 1:
            raise ValueError(f"chunk_size and batch_size must be at least 1, got {chunk_size} and {batch_size}")
        if buffer_chunks is None:
            buffer_chunks = max(2, -(-BUFFER_BATCHES * batch_size // chunk_size))
        if buffer_chunks < 1:
            raise ValueError(f"buffer_chunks must be at least 1, got {buffer_chunks}")
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        self.chunk_size, self.batch_size, self.buffer_chunks = chunk_size, batch_size, buffer_chunks
        self.drop_last, self.seed, self.epoch = drop_last, seed, 0
        self._skip = 0  # batches the next iteration leaves out (a resumed epoch)
        # positions grouped by chunk, by row within a chunk: group g is _by_chunk[_starts[g]:_starts[g + 1]]
        self._by_chunk = np.lexsort((rows, rows // chunk_size))
        self._rows = rows
        chunks = rows[self._by_chunk] // chunk_size
        self._starts = [*np.flatnonzero(np.diff(chunks, prepend=-1)).tolist(), len(rows)]

    @property
    def num_chunks(self) -> int:
        """Chunks that hold at least one of ``rows``."""
        return len(self._starts) - 1

    def set_epoch(self, epoch: int) -> None:
        """Use the order of epoch ``epoch`` for the next iteration."""
        self.epoch = epoch

    def start_at(self, epoch: int, batch: int) -> None:
        """Make the next iteration the rest of epoch ``epoch`` from its batch ``batch`` on (the batches
        before it are drawn as usual and left out): a run resumed mid-epoch sees the batches an
        uninterrupted run would have seen."""
        if epoch < 0 or batch < 0:
            raise ValueError(f"epoch and batch must be >= 0, got {epoch} and {batch}")
        self.epoch, self._skip = epoch, batch

    def __len__(self) -> int:
        n = len(self._rows)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        skip, self._skip = self._skip, 0
        for number, batch in enumerate(self._epoch()):
            if number >= skip:
                yield batch

    def _epoch(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        fill = self.buffer_chunks * self.chunk_size
        buffer: list[np.ndarray] = []
        held = 0
        for group in rng.permutation(self.num_chunks).tolist():
            positions = self._by_chunk[self._starts[group] : self._starts[group + 1]]
            buffer.append(positions)
            held += len(positions)
            if held >= fill:
                pool = rng.permutation(np.concatenate(buffer))
                cut = len(pool) - len(pool) % self.batch_size
                yield from self._batches(pool[:cut])
                buffer, held = [pool[cut:]], len(pool) - cut
        pool = rng.permutation(np.concatenate(buffer)) if buffer else np.empty(0, dtype=np.int64)
        if self.drop_last:
            pool = pool[: len(pool) - len(pool) % self.batch_size]
        yield from self._batches(pool)

    def _batches(self, pool: np.ndarray) -> Iterator[list[int]]:
        for start in range(0, len(pool), self.batch_size):
            yield pool[start : start + self.batch_size].tolist()
