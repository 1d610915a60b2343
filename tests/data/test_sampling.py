"""ChunkShuffleSampler: every row once per epoch, batches that mix chunks, seeded per epoch; the loaders using it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, RandomSampler

from eossl.data.datamodule import EODataModule, StoreDataset, _already_collated
from eossl.data.modality import Modality
from eossl.data.sampling import ChunkShuffleSampler
from eossl.data.store import SampleStore, StoreWriter

CHUNK = 4


def _epoch(sampler: ChunkShuffleSampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_every_row_once_per_epoch_and_batches_mix_chunks():
    rows = np.arange(200)
    sampler = ChunkShuffleSampler(rows, CHUNK, batch_size=16, buffer_chunks=8, seed=1)
    batches = _epoch(sampler, 0)
    assert len(batches) == len(sampler) == 13 and [len(b) for b in batches[:-1]] == [16] * 12
    assert sorted(np.concatenate(batches).tolist()) == rows.tolist()
    chunks_per_batch = [len(np.unique(rows[b] // CHUNK)) for b in batches[:-1]]
    assert min(chunks_per_batch) >= 4  # a batch draws from a buffer of 8 chunks, not from one or two
    # the buffer is cut into batches: a chunk's rows stay within a few consecutive batches
    first = {c: min(i for i, b in enumerate(batches) if c in set(rows[b] // CHUNK)) for c in range(50)}
    last = {c: max(i for i, b in enumerate(batches) if c in set(rows[b] // CHUNK)) for c in range(50)}
    assert max(last[c] - first[c] for c in range(50)) <= 3


def test_seeded_per_epoch():
    def sampler(seed: int) -> ChunkShuffleSampler:
        return ChunkShuffleSampler(np.arange(96), CHUNK, batch_size=8, seed=seed)

    a, b = sampler(0), sampler(0)
    assert _epoch(a, 3) == _epoch(b, 3)  # the same seed and epoch: the same batches
    assert _epoch(a, 0) != _epoch(a, 1)  # epochs differ
    assert _epoch(a, 0) != _epoch(sampler(1), 0)  # seeds differ
    fresh = sampler(0)
    assert list(fresh) == _epoch(b, 0) and list(fresh) == _epoch(b, 1)  # without set_epoch it counts iterations


def test_a_split_subset_of_rows_and_drop_last():
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(400, 150, replace=False))  # a split: scattered rows, chunks partly in it
    sampler = ChunkShuffleSampler(rows, 16, batch_size=32, drop_last=True, seed=2)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 150 // 32 and all(len(b) == 32 for b in batches)
    seen = np.concatenate(batches)
    assert len(np.unique(seen)) == len(seen) == 128 and seen.max() < 150  # positions into rows, none twice
    assert sampler.num_chunks == len(np.unique(rows // 16))
    kept = ChunkShuffleSampler(rows, 16, batch_size=32, seed=2)
    assert len(kept) == 5 and sorted(np.concatenate(list(kept)).tolist()) == list(range(150))
    unsorted = rng.permutation(rows)  # the positions' rows need not be sorted
    batches = list(ChunkShuffleSampler(unsorted, 16, batch_size=32, seed=2))
    assert sorted(np.concatenate(batches).tolist()) == list(range(150))
    assert list(ChunkShuffleSampler(np.empty(0, dtype=np.int64), 16, batch_size=8)) == []


def _store(path) -> SampleStore:
    n = 96
    modality = Modality("img", "optical", ("a", "b"), "uint16", (10.0, 10.0), scale=100.0)
    writer = StoreWriter(path, n, {"img": modality}, shard_size=16, chunk_size=CHUNK)
    values = np.arange(n, dtype=np.uint16)[:, None, None, None] * np.ones((1, 2, 3, 3), np.uint16)
    writer.write({"img": values + 1}, pd.DataFrame({"location_id": np.arange(n)}))
    return SampleStore(writer.close())


def test_loaders_read_batches_through_the_sampler(tmp_path):
    store = _store(tmp_path / "s")
    dataset = StoreDataset(store, np.arange(len(store)), ["img"], [])
    sampler = ChunkShuffleSampler(dataset.indices, CHUNK, batch_size=10, seed=0)
    expected = [np.asarray(b) for b in ChunkShuffleSampler(dataset.indices, CHUNK, batch_size=10, seed=0)]
    for workers in (0, 2):
        sampler.set_epoch(0)
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=_already_collated)
        batches = list(loader)
        for batch, positions in zip(batches, expected, strict=True):
            np.testing.assert_array_equal(batch["index"].numpy(), positions)
            torch.testing.assert_close(batch["img"][:, 0, 0, 0], torch.from_numpy(positions + 1.0).float() / 100)
    dm = EODataModule(store, ["img"], batch_size=16, val=0.0, test=0.0, in_memory=False)
    assert isinstance(dm.train_dataloader().batch_sampler, ChunkShuffleSampler)  # "auto": read from disk
    rows = torch.cat([b["index"] for b in dm.loader("train", 16, shuffle=True, seed=4)]).numpy()
    assert sorted(rows.tolist()) == list(range(96)) and not (rows == np.arange(96)).all()
    full = dm.loader("train", 16, shuffle="full", seed=4)
    assert isinstance(full.sampler, RandomSampler)
    in_memory = EODataModule(store, ["img"], batch_size=16, val=0.0, test=0.0, in_memory=True)
    # "auto" in memory: a full shuffle, seeded by (seed, epoch) so a resumed run can continue it
    order = in_memory.train_dataloader().batch_sampler
    assert isinstance(order, ChunkShuffleSampler) and order.chunk_size == 1
    in_memory.distributed = True  # across processes Lightning puts its DistributedSampler in place of this one
    assert isinstance(in_memory.train_dataloader().sampler, RandomSampler)
    in_memory.distributed = False
    assert isinstance(in_memory.loader("train", 16, shuffle="chunks").batch_sampler, ChunkShuffleSampler)
    with pytest.raises(ValueError, match="shuffle must be"):
        dm.loader("train", 16, shuffle="random")


def test_a_resumed_epoch_continues_with_the_batches_an_uninterrupted_one_has():
    rows = np.arange(200)
    sampler = ChunkShuffleSampler(rows, 4, batch_size=8, seed=3)
    epochs = [list(sampler) for _ in range(3)]  # epochs 0, 1, 2
    resumed = ChunkShuffleSampler(rows, 4, batch_size=8, seed=3)
    resumed.start_at(1, 5)  # killed after 5 batches of epoch 1
    assert list(resumed) == epochs[1][5:]
    assert list(resumed) == epochs[2]  # then the epochs go on as before
    with pytest.raises(ValueError, match="epoch and batch"):
        resumed.start_at(0, -1)


def test_the_data_module_starts_a_resumed_run_mid_epoch(tmp_path):
    store = _store(tmp_path / "s")
    dm = EODataModule(store, ["img"], batch_size=16, val=0.0, test=0.0, in_memory=True, seed=2)
    loader = dm.train_dataloader()
    first, second = [[b["index"].tolist() for b in loader] for _ in range(2)]
    assert first != second
    dm.resume_at = (1, 2)
    resumed = dm.train_dataloader()
    assert [b["index"].tolist() for b in resumed] == second[2:]
    assert dm.resume_at is None  # only the first loader after a resume starts mid-epoch
