"""The importer base class, what an importer plans and reads, and the registry (see :mod:`eossl.data.importers`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from eossl.data.modality import Modality
from eossl.data.targets import Dates, Pair, Target
from eossl.registry import Registry


class ImporterOptions(BaseModel):
    """Options every importer accepts; an importer's own options derive from this.

    ``workers``: dask workers of a ``LocalCluster`` started for the import (``None``: one per CPU
    core, at most 8, or this process for imports of fewer than 64 items; ``0``: read in this process).
    ``scheduler``: the address of an existing dask cluster (``tcp://host:8786``) instead. ``on_error``:
    ``raise`` stops at the first bad file; ``skip`` leaves it out, counts it and lists it with the
    reason in ``STORE/import_report.json``.
    """

    model_config = ConfigDict(extra="forbid")
    overwrite: bool = False
    on_error: Literal["raise", "skip"] = "raise"
    workers: int | None = Field(None, ge=0)
    scheduler: str | None = None
    chunk_size: int = Field(16, ge=1)
    shard_size: int = Field(256, ge=1)


@dataclass(frozen=True)
class ImportItem:
    """One unit of reading: a sample, or a tile that gives several patches.

    ``key`` identifies it (errors and the import report name it with its ``files``, whose sizes give
    the import throughput); ``info`` holds what the importer's :meth:`Importer.read` needs (labels,
    dates, windows), as plain data so that it travels to dask workers.
    """

    key: str
    files: tuple[Path, ...]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sample:
    """One sample read from a source: arrays by name (modalities ``[C, H, W]``; extra arrays by their
    declared shape) and its metadata-table row (location, time, labels, tile)."""

    key: str
    arrays: dict[str, np.ndarray]
    row: dict[str, Any]


@dataclass(frozen=True)
class Filtered:
    """A patch left out by the import's own rule (e.g. over the nodata threshold): counted, not an error."""

    key: str
    reason: str


@dataclass
class ImportPlan:
    """What an import will write, known before reading pixels.

    ``capacity``: the most samples the items can give (default: one per item); the store holds those
    actually written. ``targets``, ``dates``, ``pairs`` and ``split`` are declared in the store (see
    :meth:`eossl.data.store.StoreWriter.close`); ``notes`` are the conventions the importer decided
    (e.g. a Sentinel-2 offset and how it was found) and land in the import report and the store.
    """

    modalities: dict[str, Modality]
    items: list[ImportItem]
    extra_arrays: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)
    capacity: int | None = None
    targets: list[Target] = field(default_factory=list)
    dates: Dates | None = None
    pairs: list[Pair] = field(default_factory=list)
    split: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class Importer:
    """Reads one dataset layout from ``source`` and writes a v2 store at ``store`` (atomically).

    A subclass implements :meth:`plan` (list the items and declare modalities and targets, reading
    only metadata) and :meth:`read` (one item's pixels -> samples; it runs on dask workers); the
    shared pipeline (:func:`eossl.data.importers.pipeline.run_import`) does the rest: parallel reading
    with bounded memory, checks, skips, statistics, the import report and the atomic publish.
    """

    name: ClassVar[str]
    config: ClassVar[type[ImporterOptions]] = ImporterOptions

    def plan(self, source: Path, options: Any) -> ImportPlan:  # pragma: no cover - abstract
        raise NotImplementedError

    def read(self, item: ImportItem, options: Any) -> list[Sample | Filtered]:  # pragma: no cover - abstract
        raise NotImplementedError

    def write(self, source: Path, store: Path, options: ImporterOptions, progress: Any = None) -> Path:
        """Import ``source`` into ``store``; ``progress(done, total)`` is called as items finish."""
        from eossl.data.importers.pipeline import run_import

        return run_import(self, Path(source), Path(store), options, progress=progress)


IMPORTERS: Registry[type[Importer]] = Registry("importer", packages=("eossl.data.importers",))
