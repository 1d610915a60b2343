"""Datasets and the Lightning DataModule: batches are ``dict[modality or target -> tensor]``.

Image modalities come out in physical units as float32 (S2 reflectance, S1 dB, DEM metres) with
nodata turned into NaN, so that normalisation and the missing-value policy live in one place
(:mod:`eossl.data.normalize`). Targets are those the store declares (:attr:`SampleStore.targets`),
under their names, with values by kind: single-label int64 ``[N]``, regression float32 ``[N]``,
multi-label float32 ``[N, C]``, segmentation and change int64 ``[N, H, W]``, pixel-regression float32
``[N, H, W]``. ``"index"`` holds the store rows of the batch.

With ``dates > 1`` (temporal pairing, e.g. SeCo) a sample also holds ``dates - 1`` other scenes of
its place (the store's ``dates.group``) under ``"<modality>@<k>"`` and their rows under ``"index@<k>"``
(k = 1 .. dates - 1).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from eossl.data.sampling import ChunkShuffleSampler
from eossl.data.splits import label_fraction, multilabel_fraction, official_splits, split_by_location
from eossl.data.store import SampleStore, StoreError
from eossl.data.targets import STRATA_KINDS, Target

IN_MEMORY_LIMIT_BYTES = 4 * 1024**3

ShuffleMode = Literal["auto", "chunks", "full"]
"""How shuffled loaders order samples; see :attr:`EODataModule.shuffle`."""


def _already_collated(batch: dict) -> dict:
    return batch


class TemporalPartners:
    """Draws, for rows of a split, other scenes (rows) of the same place in that split.

    A place is a value of the store's ``dates.group`` column (e.g. ``location_id``). Rows whose place
    has fewer than ``dates`` scenes in ``rows`` cannot be paired: they are left out of :attr:`rows`
    with a warning giving their count.
    """

    def __init__(self, store: SampleStore, rows: np.ndarray, dates: int) -> None:
        table = store.table
        if store.dates is None:
            raise StoreError(
                f"store '{store.path}': temporal pairing (dates={dates}) needs the store to declare its dates "
                "(which rows are scenes of one place): write it with StoreWriter.close(dates=Dates(group="
                "'<column of place ids>', time='<column of acquisition times>'))"
            )
        column = store.dates.group
        if column not in table.columns:
            raise StoreError(
                f"store '{store.path}': temporal pairing (dates={dates}) needs a '{column}' column in "
                f"its metadata table (it has: {', '.join(map(str, table.columns))})"
            )
        rows = np.asarray(rows)
        locations = table[column].to_numpy()[rows]
        _, group, counts = np.unique(locations, return_inverse=True, return_counts=True)
        enough = counts[group] >= dates
        if not enough.any():
            raise StoreError(
                f"store '{store.path}': no {column} has {dates} scenes among the {len(rows)} rows of the "
                f"split (most: {counts.max(initial=0)}); temporal pairing needs dates <= scenes per {column}"
            )
        if not enough.all():
            warnings.warn(
                f"temporal pairing: {int((~enough).sum())} of {len(rows)} rows of store '{store.path}' left out, "
                f"their {column} has fewer than {dates} scenes in the split",
                stacklevel=3,
            )
        self.rows, self.dates = rows[enough], dates
        _, group, counts = np.unique(locations[enough], return_inverse=True, return_counts=True)
        order = np.argsort(group, kind="stable")
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])[group]
        # rows grouped by location; per row: where its location's group starts, its size, the row's place in it
        self._members, self._first, self._count = self.rows[order], first, counts[group]
        self._slot = np.empty_like(order)
        self._slot[order] = np.arange(len(order)) - first[order]

    def draw(self, positions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``[len(positions), dates - 1]`` rows: other scenes of each row's location, without replacement."""
        count, slot = self._count[positions], self._slot[positions]
        keys = rng.random((len(positions), int(count.max())))
        columns = np.arange(keys.shape[1])
        keys[(columns >= count[:, None]) | (columns == slot[:, None])] = np.inf  # not a member, or the row itself
        chosen = np.argsort(keys, axis=1)[:, : self.dates - 1]
        return self._members[self._first[positions, None] + chosen]


class StoreDataset(Dataset):
    """Samples ``indices`` of a store. Reads whole batches at once (``__getitems__``).

    ``targets`` are names of targets the store declares; each comes out under its name (see the module
    docstring for dtypes and shapes). ``arrays`` are arrays already in memory (by array name).
    ``dates > 1`` adds ``dates - 1`` other scenes of each sample's place (see :class:`TemporalPartners`),
    drawn afresh for every batch by a generator seeded from ``seed`` (and, in a loader worker, from the
    worker's seed, which the loader draws from torch's seeded generator for every epoch).
    """

    def __init__(
        self,
        store: SampleStore,
        indices: np.ndarray,
        modalities: list[str],
        targets: list[str],
        arrays: dict[str, np.ndarray] | None = None,
        dates: int = 1,
        seed: int = 0,
    ) -> None:
        for name in modalities:
            if name not in store.modalities:
                raise StoreError(
                    f"store '{store.path}' has no modality '{name}' (it has: {', '.join(store.modalities)})"
                )
        declared = [store.target(name) for name in targets]
        for target in declared:
            if target.column is not None and target.column not in store.table.columns:
                raise StoreError(
                    f"store '{store.path}': target '{target.name}' reads column '{target.column}', which its "
                    f"metadata table does not have (it has: {', '.join(map(str, store.table.columns))})"
                )
        if dates < 1:
            raise ValueError(f"dates must be at least 1 (scenes per sample), got {dates}")
        self.store, self.indices = store, np.asarray(indices)
        self.modalities, self.targets = list(modalities), list(targets)
        self._declared = declared
        self.arrays = arrays or {}
        self.partners = TemporalPartners(store, self.indices, dates) if dates > 1 else None
        if self.partners is not None:
            self.indices = self.partners.rows
        self.seed = seed
        self._rng: tuple[int | None, np.random.Generator] | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def _read(self, name: str, rows: np.ndarray) -> np.ndarray:
        if name in self.arrays:
            return self.arrays[name][rows]
        return self.store.read(name, rows)

    def _generator(self) -> np.random.Generator:
        """This process's generator for partner draws: one per loader worker (and epoch), one in the main process."""
        info = get_worker_info()
        owner = None if info is None else info.seed
        if self._rng is None or self._rng[0] != owner:
            self._rng = (owner, np.random.default_rng([self.seed] if owner is None else [self.seed, owner]))
        return self._rng[1]

    def __getitems__(self, positions: list[int]) -> dict[str, torch.Tensor]:
        positions = np.asarray(positions)
        rows = self.indices[positions]
        scenes = [rows]
        if self.partners is not None:
            scenes += list(self.partners.draw(positions, self._generator()).T)
        batch: dict[str, torch.Tensor] = {}
        for name in self.modalities:
            modality = self.store.modalities[name]
            raw = self._read(name, np.concatenate(scenes))
            x = modality.to_physical(raw)
            for k, part in enumerate(torch.from_numpy(x).chunk(len(scenes))):
                batch[f"{name}@{k}" if k else name] = part
        for target in self._declared:
            batch[target.name] = self._target(target, rows)
        for k, scene_rows in enumerate(scenes):
            batch[f"index@{k}" if k else "index"] = torch.from_numpy(scene_rows.astype(np.int64))
        return batch

    def _target(self, target: Target, rows: np.ndarray) -> torch.Tensor:
        """Values of one declared target for ``rows``, typed by its kind."""
        if target.column is not None:
            values = self.store.table[target.column].to_numpy()[rows]
            return torch.from_numpy(values.astype(np.int64 if target.kind == "single-label" else np.float32))
        values = self._read(target.array, rows)
        if target.dense and values.ndim == 4:
            values = values[:, 0]  # the singleton channel axis
        return torch.from_numpy(values.astype(np.int64 if target.kind in ("segmentation", "change") else np.float32))

    def __getitem__(self, position: int) -> dict[str, torch.Tensor]:
        """One sample (the batch of one, without its batch axis)."""
        return {k: v[0] for k, v in self.__getitems__([position]).items()}


def load_arrays(store: SampleStore, names: list[str], in_memory: bool | str = "auto") -> dict[str, np.ndarray]:
    """Load arrays into RAM when asked, or (``auto``) when they fit in ``IN_MEMORY_LIMIT_BYTES``."""
    if in_memory is False:
        return {}
    size = sum(store.array(n).nbytes for n in names)
    if in_memory == "auto" and size > IN_MEMORY_LIMIT_BYTES:
        return {}
    return {name: store.read(name) for name in names}


class EODataModule(L.LightningDataModule):
    """Train/val/test split by place; optional stratified label fraction of the training split.

    Places are the store's ``dates.group`` when it declares dates (else ``location_id`` if present,
    else every row), see :func:`split_by_location`. ``fraction`` keeps that share of the training split,
    stratified by the classes of the target ``stratify`` (or of its ``strata`` target; default: the
    store's first single-label target). ``dates > 1``: every sample also holds ``dates - 1`` other scenes
    of its place from the same split (temporal positives, see :class:`StoreDataset`); ``seed`` seeds
    their draw. Arrays of the modalities and of the targets' ``array`` sources are kept in memory when
    ``in_memory`` asks for it (see :func:`load_arrays`). :attr:`shuffle` says how the training batches
    are shuffled; ``seed`` also seeds the chunk shuffle.
    """

    shuffle: ShuffleMode = "auto"
    """How shuffled loaders (:meth:`train_dataloader`, ``loader(shuffle=True)``) order samples.

    ``"chunks"``: :class:`~eossl.data.sampling.ChunkShuffleSampler`, batches drawn from a shuffled
    buffer of the store's chunks, so that each chunk is decoded once per buffer; on a store of 16-row
    chunks about 5x faster from disk than a full shuffle (``benchmarks/README.md``), at the cost of
    some randomness (see the sampler). On stores of one-row chunks (the writer's default) it is a
    uniform shuffle and reads as fast as ``"full"``.
    ``"full"``: a uniform permutation every epoch: for :meth:`train_dataloader` of one process drawn from
    ``(seed, epoch)`` (so a resumed run sees the same batches), across processes Lightning's
    ``DistributedSampler``, for :meth:`loader` :class:`torch.utils.data.RandomSampler`.
    ``"auto"``: ``"chunks"`` when the loader reads an array from disk, ``"full"`` when every array it
    reads is in memory (the order in-memory runs always had). Set it on the module (``dm.shuffle = "full"``).
    """

    resume_at: tuple[int, int] | None = None
    """``(epoch, batch)``: the next training loader starts at that batch of that epoch (a run resumed
    from a checkpoint written mid-epoch), then goes on as usual; ``None``: from the start of an epoch."""

    distributed: bool = False
    """Whether the training loader is sharded over processes (Lightning then puts a ``DistributedSampler``
    in place of a plain random sampler; a single process gets a seeded full shuffle that can resume)."""

    def __init__(
        self,
        store: str | Path | SampleStore,
        modalities: list[str],
        targets: list[str] | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        val: float = 0.1,
        test: float = 0.2,
        split_seed: int = 0,
        fraction: float | None = None,
        fraction_seed: int = 0,
        in_memory: bool | str = "auto",
        dates: int = 1,
        seed: int = 0,
        stratify: str | None = None,
    ) -> None:
        super().__init__()
        self.dates, self.seed = dates, seed
        self.store = store if isinstance(store, SampleStore) else SampleStore(store)
        self.modalities, self.targets = list(modalities), list(targets or [])
        self.batch_size, self.num_workers = batch_size, num_workers
        group = self.store.dates.group if self.store.dates is not None else None
        if self.store.split is not None:  # the dataset's official split
            self.splits = official_splits(self.store.table, self.store.split, val=val, seed=split_seed, group=group)
        else:
            self.splits = split_by_location(self.store.table, val=val, test=test, seed=split_seed, group=group)
        if fraction is not None:
            self.splits["train"] = self._fraction(self.splits["train"], fraction, fraction_seed, stratify)
        sources = [self.store.target(t).array for t in self.targets]
        needed = list(dict.fromkeys(self.modalities + [a for a in sources if a is not None]))
        self.arrays = load_arrays(self.store, needed, in_memory)

    def _fraction(self, train: np.ndarray, fraction: float, seed: int, stratify: str | None) -> np.ndarray:
        """Stratified ``fraction`` of ``train`` by the classes of ``stratify`` (or its ``strata`` target)."""
        if stratify is None:
            single = self.store.targets_of_kind("single-label")
            if not single:
                declared = ", ".join(f"{t.name} ({t.kind})" for t in self.store.targets.values()) or "none"
                raise StoreError(
                    f"store '{self.store.path}': a label fraction is stratified by a single-label target, and the "
                    f"store declares none (it declares: {declared}); pass stratify=<target name>"
                )
            stratify = single[0].name
        target = self.store.target(stratify)
        strata = self.store.target(target.strata) if target.strata is not None else target
        if strata.kind == "single-label":
            return label_fraction(self.store.table[strata.column].to_numpy(), train, fraction, seed)
        if strata.kind == "multi-label":
            return multilabel_fraction(self.store.read(strata.array), train, fraction, seed)
        raise StoreError(
            f"store '{self.store.path}': target '{stratify}' ({target.kind}) cannot stratify a label fraction: "
            f"its strata must be a target of kind {' or '.join(STRATA_KINDS)}, got '{strata.name}' ({strata.kind})"
        )

    def dataset(self, split: str, positions: np.ndarray | None = None) -> StoreDataset:
        """The samples of ``split`` (``positions``: indices into ``self.splits[split]``, a subset of it)."""
        rows = self._rows(split, positions)
        return StoreDataset(self.store, rows, self.modalities, self.targets, self.arrays, self.dates, self.seed)

    def _rows(self, split: str, positions: np.ndarray | None) -> np.ndarray:
        if split not in self.splits:
            raise StoreError(f"unknown split '{split}' (known: {', '.join(self.splits)})")
        rows = self.splits[split]
        return rows if positions is None else rows[np.asarray(positions, dtype=np.int64)]

    def loader(
        self,
        split: str,
        batch_size: int,
        *,
        positions: np.ndarray | None = None,
        shuffle: bool | ShuffleMode = False,
        seed: int = 0,
        drop_last: bool = False,
        num_workers: int | None = None,
        persistent_workers: bool = False,
    ) -> DataLoader:
        """Batches (dicts, see :meth:`StoreDataset.__getitems__`) of ``split`` or of its ``positions``.

        ``shuffle``: ``False`` keeps the order of the split; ``True`` shuffles as :attr:`shuffle` says, or
        name the mode. ``"full"``: the order :class:`torch.utils.data.RandomSampler` draws from
        ``torch.Generator().manual_seed(seed)``, the order a shuffled loader of any dataset of the same
        length gets from that generator. ``"chunks"``: :class:`~eossl.data.sampling.ChunkShuffleSampler`
        seeded with ``seed`` (the epoch counts the loader's iterations). ``num_workers`` ``None``: the
        module's own.
        """
        dataset = self.dataset(split, positions)
        workers = self.num_workers if num_workers is None else num_workers
        mode = self.shuffle if shuffle is True else shuffle or None
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(
            dataset,
            **self._order(dataset, mode, batch_size, drop_last, seed, generator),
            num_workers=workers,
            collate_fn=_already_collated,
            persistent_workers=persistent_workers and workers > 0,
        )

    def read_split(self, split: str, names: list[str], positions: np.ndarray | None = None) -> dict[str, torch.Tensor]:
        """The whole ``split`` (or its ``positions``) in one batch: modalities and targets ``names``, and ``index``.

        One scene per row (no temporal partners); arrays in memory are used where they are.
        """
        unknown = [n for n in names if n not in self.store.modalities and n not in self.store.targets]
        if unknown:
            raise StoreError(
                f"store '{self.store.path}' has no modality or target {', '.join(map(repr, unknown))} "
                f"(modalities: {', '.join(self.store.modalities)}; targets: {', '.join(self.store.targets) or 'none'})"
            )
        modalities = [n for n in names if n in self.store.modalities]
        targets = [n for n in names if n not in self.store.modalities]
        dataset = StoreDataset(self.store, self._rows(split, positions), modalities, targets, self.arrays)
        return dataset.__getitems__(list(range(len(dataset))))

    def _order(
        self,
        dataset: StoreDataset,
        mode: ShuffleMode | None,
        batch_size: int,
        drop_last: bool,
        seed: int,
        generator: torch.Generator | None,
    ) -> dict[str, Any]:
        """DataLoader arguments for batches of ``dataset``: in order (``mode`` ``None``) or shuffled by ``mode``."""
        if mode not in (None, "auto", "chunks", "full"):
            raise ValueError(f"shuffle must be a bool or one of 'auto', 'chunks', 'full', got {mode!r}")
        chunk = None if mode in (None, "full") else _chunk_rows(dataset, streamed_only=mode == "auto")
        if chunk is None:
            shuffled = mode is not None
            return {"batch_size": batch_size, "shuffle": shuffled, "drop_last": drop_last,
                    "generator": generator if shuffled else None}  # fmt: skip
        sampler = ChunkShuffleSampler(dataset.indices, chunk, batch_size, drop_last=drop_last, seed=seed)
        return {"batch_sampler": sampler}

    def _loader(self, split: str, shuffle: bool, drop_last: bool = False) -> DataLoader:
        dataset = self.dataset(split)
        mode = self.shuffle if shuffle else None
        drop_last = drop_last and len(dataset) > self.batch_size
        order = self._order(dataset, mode, self.batch_size, drop_last, self.seed, None)
        if order.get("shuffle") and not self.distributed:  # a full shuffle that can resume mid-epoch
            order = {"batch_sampler": ChunkShuffleSampler(dataset.indices, 1, self.batch_size, drop_last=drop_last,
                                                          seed=self.seed)}  # fmt: skip
        if shuffle and self.resume_at is not None and "batch_sampler" in order:
            order["batch_sampler"].start_at(*self.resume_at)
            self.resume_at = None
        return DataLoader(
            dataset,
            **order,
            num_workers=self.num_workers,
            collate_fn=_already_collated,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches (the last partial batch dropped when there is more than one batch).

        Shuffled as :attr:`shuffle` says, from ``seed`` and the epoch; :attr:`resume_at` starts it mid-epoch.
        """
        return self._loader("train", shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches in split order."""
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Test batches in split order."""
        return self._loader("test", shuffle=False)


def _chunk_rows(dataset: StoreDataset, streamed_only: bool) -> int | None:
    """Rows per stored chunk of the arrays ``dataset`` reads (the largest), or ``None`` when it reads none.

    ``streamed_only``: count only the arrays read from the store (not those held in memory).
    """
    names = list(dataset.modalities) + [t.array for t in dataset._declared if t.array is not None]
    names = [n for n in dict.fromkeys(names) if not (streamed_only and n in dataset.arrays)]
    sizes = [int(dataset.store.array(n).chunks[0]) for n in names]
    return max(sizes) if sizes else None
