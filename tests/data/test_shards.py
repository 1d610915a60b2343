"""ShardReader reads the same rows as zarr, for every layout it accepts; other layouts go through zarr."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import zarr
from zarr.codecs import BloscCodec, ShardingCodec

from eossl.data.modality import Modality
from eossl.data.shards import ShardReader
from eossl.data.store import SampleStore, StoreWriter

N = 102  # chunks of 4 and shards of 16: the last chunk and the last shard are partial


def _rows(rng: np.random.Generator) -> list[np.ndarray]:
    return [
        rng.integers(0, N, 40),  # unsorted, repeated
        np.arange(N),
        np.arange(8, 12),  # one whole chunk
        np.arange(96, N),  # the partial last chunk
        np.array([5, 5, 3, -1, 0]),
        np.arange(20, 60)[::-1],
        np.empty(0, dtype=np.int64),
    ]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> SampleStore:
    rng = np.random.default_rng(0)
    modality = Modality("img", "optical", ("a", "b"), "uint16", (10.0, 10.0))
    extra = {"vec": ((5,), "float32"), "mask": ((1, 3, 3), "uint8")}
    writer = StoreWriter(tmp_path_factory.mktemp("s") / "s", N, {"img": modality}, extra, shard_size=16, chunk_size=4)
    img = rng.integers(1, 10000, (N, 2, 3, 3)).astype(np.uint16)
    img[16:32] = 0  # a whole shard of fill values: zarr writes no file for it
    img[36:40] = 0  # one chunk of fill values: an empty entry in its shard's index
    arrays = {"img": img, "vec": rng.random((N, 5)).astype(np.float32), "mask": rng.integers(0, 4, (N, 1, 3, 3))}
    writer.write(arrays, pd.DataFrame({"location_id": np.arange(N)}))
    return SampleStore(writer.close())


@pytest.mark.parametrize("name", ["img", "vec", "mask"])
def test_the_store_reads_what_zarr_reads(store, name):
    arr = store.array(name)
    reader = store._reader(name)
    assert isinstance(reader, ShardReader) and reader.chunk_rows == 4
    whole = arr[:]
    for rows in _rows(np.random.default_rng(1)):
        np.testing.assert_array_equal(store.read(name, rows), whole[rows])
    np.testing.assert_array_equal(store.read(name), whole)
    np.testing.assert_array_equal(store.read(name, slice(3, 50, 2)), whole[3:50:2])
    store.fast_reads = False  # through zarr: the same rows
    try:
        for rows in _rows(np.random.default_rng(1)):
            np.testing.assert_array_equal(store.read(name, rows), whole[rows])
    finally:
        del store.fast_reads
    with pytest.raises(IndexError):
        store.read(name, np.array([N]))


def test_partly_read_chunks_are_decoded_once_and_the_cache_is_bounded(store):
    reader = pickle.loads(pickle.dumps(store._reader("img")))  # picklable (loader workers under spawn)
    assert not reader._chunks
    reader.read(np.array([1, 2, 5]))  # parts of chunks 0 and 1
    assert list(reader._chunks) == [0, 1]
    reader.read(np.arange(8, 12))  # a whole chunk goes straight into the batch
    assert list(reader._chunks) == [0, 1]
    reader.cache_bytes = 2 * reader.chunk_bytes
    reader.read(np.array([13, 17, 21]))
    assert list(reader._chunks) == [4, 5]


@pytest.mark.parametrize(
    ("compressors", "index_location"),
    [((), "end"), (BloscCodec(cname="lz4", clevel=1, shuffle="shuffle"), "start")],
)
def test_other_accepted_layouts(tmp_path, compressors, index_location):
    values = np.random.default_rng(2).integers(0, 1000, (N, 3, 2)).astype(np.int32)
    arr = zarr.create_array(
        tmp_path / "a", shape=values.shape, dtype="int32", chunks=(4, 3, 2), shards=(16, 3, 2), compressors=compressors
    )
    if index_location == "start":
        sharding = ShardingCodec(chunk_shape=(4, 3, 2), codecs=arr.metadata.codecs[0].codecs, index_location="start")
        arr = zarr.create_array(
            tmp_path / "b", shape=values.shape, dtype="int32", chunks=(16, 3, 2), serializer=sharding, compressors=None
        )
    arr[:] = values
    reader = ShardReader.open(zarr.open_array(arr.store_path, mode="r"))
    assert reader is not None and reader.compressed == bool(compressors)
    assert reader.index_at_end == (index_location == "end")
    for rows in _rows(np.random.default_rng(3)):
        np.testing.assert_array_equal(reader.read(rows), values[rows])


def test_layouts_it_does_not_read_are_left_to_zarr(tmp_path):
    plain = zarr.create_array(tmp_path / "plain", shape=(10, 2), dtype="uint16", chunks=(4, 2))  # not sharded
    split = zarr.create_array(tmp_path / "split", shape=(10, 4), dtype="uint16", chunks=(2, 2), shards=(4, 4))
    big = zarr.create_array(tmp_path / "big", shape=(10, 2), dtype=">u2", chunks=(2, 2), shards=(4, 2))
    for arr in (plain, split, big):
        assert ShardReader.open(arr) is None
