"""The import pipeline every importer shares: read items in parallel with dask (bounded memory), check
and write samples in source order, skip or stop on bad files, publish the store with its import report.

``run_import(importer, source, store, options)``:

1. ``importer.plan(source, options)`` lists the items and declares modalities, targets, dates, splits;
2. items are read by ``importer.read`` on dask workers (a ``LocalCluster``, an existing scheduler, or in
   this process with ``workers=0``), small items grouped into tasks of up to ~64 MB of files, at most
   two tasks per worker in flight, so memory does not grow with the dataset; results are consumed in
   item order, so the store does not depend on worker timing;
3. each sample is checked (unique key, the same array shapes as the first sample, not all nodata) and
   buffered into blocks of ``shard_size`` samples for :class:`~eossl.data.store.StoreWriter`;
4. a bad item raises :class:`~eossl.errors.ImportDataError` naming its files (``on_error: raise``) or is
   counted and listed with its reason (``on_error: skip``);
5. ``STORE/import_report.json`` (counts, skips, filtered patches, notes, throughput) is published with
   the store, atomically: a killed import leaves the old store (or none) at the path.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eossl.data.importers._base import Filtered, Importer, ImporterOptions, ImportItem, ImportPlan, Sample
from eossl.data.importers.raster import invalid_share
from eossl.data.store import StoreWriter
from eossl.errors import EosslError, ImportDataError, StoreError

REPORT_FILE = "import_report.json"
MAX_LOCAL_WORKERS = 8
SMALL_IMPORT_ITEMS = 64
TASK_ITEMS = 32
TASK_BYTES = 64 * 1024**2
"""At most this many items, and about this many bytes of files, per dask task (one item if larger)."""
"""With ``workers`` unset, fewer items than this are read in this process: starting a cluster would take
longer than the import."""


@dataclass
class ItemResult:
    """What reading one item gave: its samples and filtered patches, or the error that stopped it."""

    item: ImportItem
    samples: list[Sample] = field(default_factory=list)
    filtered: list[Filtered] = field(default_factory=list)
    error: str | None = None
    bytes_read: int = 0


def read_item(importer: Importer, item: ImportItem, options: ImporterOptions) -> ItemResult:
    """Read one item (runs on a worker). Errors come back as text naming the item's files."""
    result = ItemResult(item, bytes_read=sum(_size(p) for p in item.files))
    try:
        for out in importer.read(item, options):
            (result.filtered if isinstance(out, Filtered) else result.samples).append(out)
    except EosslError as exc:
        result.error = str(exc)
    except Exception as exc:  # a reader library's error: name the files, keep the cause
        files = ", ".join(f"'{p}'" for p in item.files)
        last = traceback.extract_tb(exc.__traceback__)[-1]
        result.error = f"{files}: {type(exc).__name__}: {exc} (in {Path(last.filename).name}:{last.lineno})"
    return result


def _size(path: Path) -> int:
    """The size of a listed file (0 when it is missing or its name cannot even be looked up, e.g. too long)."""
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


def read_items(importer: Importer, items: list[ImportItem], options: ImporterOptions) -> list[ItemResult]:
    """:func:`read_item` of several items (one dask task)."""
    return [read_item(importer, item, options) for item in items]


def _item_bytes(items: list[ImportItem], probe: int = 16) -> int:
    """Mean size of the files of the first ``probe`` items (at least 1)."""
    sizes = [sum(_size(p) for p in item.files) for item in items[:probe]]
    return max(1, int(np.mean(sizes)) if sizes else 1)


class _Executor:
    """Item results in order, with at most ``window`` items in flight (dask or in-process)."""

    def __init__(self, options: ImporterOptions, items: int) -> None:
        self.client = self.cluster = None
        self.where = "this process"
        if options.scheduler:
            self.where = f"dask scheduler {options.scheduler}"
            from distributed import Client

            self.client = Client(options.scheduler)
        elif options.workers != 0 and (options.workers is not None or items >= SMALL_IMPORT_ITEMS):
            from distributed import Client, LocalCluster

            workers = options.workers or min(os.cpu_count() or 1, MAX_LOCAL_WORKERS)
            self.where = f"dask LocalCluster of {workers} workers"
            self.cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            self.client = Client(self.cluster)
        self.window = 2 * len(self.client.scheduler_info()["workers"]) + 2 if self.client else 1

    def map(self, importer: Importer, items: list[ImportItem], options: ImporterOptions) -> Iterator[ItemResult]:
        if self.client is None:
            for item in items:
                yield read_item(importer, item, options)
            return
        # a task reads a few items, so that dask's per-task cost (ms) stays small beside small files
        per_task = max(1, min(TASK_ITEMS, len(items) // (self.window * 4), TASK_BYTES // _item_bytes(items)))
        tasks = iter([items[i : i + per_task] for i in range(0, len(items), per_task)])
        pending: deque = deque()
        for group in tasks:
            pending.append(self.client.submit(read_items, importer, group, options, pure=False))
            if len(pending) >= self.window:
                break
        while pending:
            results = pending.popleft().result()
            nxt = next(tasks, None)
            if nxt is not None:
                pending.append(self.client.submit(read_items, importer, nxt, options, pure=False))
            yield from results

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


class _Report:
    """Counts, skips and notes of one import, written to ``STORE/import_report.json``."""

    def __init__(self, importer: Importer, source: Path, store: Path, options: ImporterOptions, plan: ImportPlan):
        self.payload: dict[str, Any] = {
            "importer": importer.name,
            "source": str(source),
            "store": str(store),
            "options": options.model_dump(mode="json"),
            "items": len(plan.items),
            "notes": list(plan.notes),
        }
        self.skipped: list[dict[str, Any]] = []
        self.filtered: Counter[str] = Counter()
        self.bytes_read = 0  # sizes of the items' listed files
        self.bytes_decoded = 0  # bytes of the arrays the samples hold
        self.start = time.perf_counter()

    def skip(self, key: str, files: tuple[Path, ...], reason: str) -> None:
        self.skipped.append({"key": key, "files": [str(p) for p in files], "reason": reason})

    def finish(self, written: int, stored_bytes: int) -> str:
        seconds = time.perf_counter() - self.start
        self.payload.update(
            samples=written,
            skipped=len(self.skipped),
            skipped_items=self.skipped,
            filtered=dict(self.filtered),
            seconds=round(seconds, 3),
            source_megabytes=round(self.bytes_read / 1e6, 3),
            megabytes_per_second=round(self.bytes_read / 1e6 / max(seconds, 1e-9), 3),
            decoded_megabytes=round(self.bytes_decoded / 1e6, 3),
            decoded_megabytes_per_second=round(self.bytes_decoded / 1e6 / max(seconds, 1e-9), 3),
            samples_per_second=round(written / max(seconds, 1e-9), 2),
            stored_megabytes=round(stored_bytes / 1e6, 3),
        )
        return json.dumps(self.payload, indent=2)


class _Checker:
    """Per-sample checks: unique keys, one shape per array, arrays the plan declares, not all nodata."""

    def __init__(self, plan: ImportPlan) -> None:
        self.plan, self.keys, self.shapes = plan, set(), {}
        self.names = set(plan.modalities) | set(plan.extra_arrays)
        self.shapes.update({name: shape for name, (shape, _) in plan.extra_arrays.items()})
        self.origin: dict[str, str] = dict.fromkeys(plan.extra_arrays, "as the import declares")

    def problem(self, sample: Sample, files: tuple[Path, ...] = ()) -> str | None:
        if sample.key in self.keys:
            return f"duplicate sample id '{sample.key}'"
        missing = sorted(self.names - set(sample.arrays))
        if missing:
            return f"sample '{sample.key}' lacks arrays {missing}"
        for name, values in sample.arrays.items():
            if name not in self.names:
                return f"sample '{sample.key}' has an undeclared array '{name}'"
            if name not in self.shapes:  # the first sample sets the shape: name it where another differs
                self.shapes[name] = tuple(values.shape)
                shown = ", ".join(f"'{p}'" for p in files)
                self.origin[name] = f"as sample '{sample.key}'" + (f" ({shown})" if shown else "")
            expected = self.shapes[name]
            if tuple(values.shape) != expected:
                return (
                    f"sample '{sample.key}': array '{name}' has shape {tuple(values.shape)}, expected {expected} "
                    f"{self.origin[name]}"
                )
            modality = self.plan.modalities.get(name)
            if modality is not None and modality.continuous and invalid_share(values, modality.nodata) == 1.0:
                return f"sample '{sample.key}': every pixel of '{name}' is nodata/NaN"
        self.keys.add(sample.key)
        return None


def run_import(
    importer: Importer,
    source: Path,
    store: Path,
    options: ImporterOptions,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Import ``source`` into ``store`` with ``importer`` (see the module docstring); returns the store path."""
    if not source.exists():
        raise ImportDataError(f"source '{source}' does not exist")
    if store.exists() and not options.overwrite:
        raise StoreError(f"store '{store}' already exists (use --overwrite, or overwrite=True, to replace it)")
    plan = importer.plan(source, options)
    if not plan.items:
        raise ImportDataError(f"'{source}': found nothing to import for '{importer.name}' (check the layout)")
    report = _Report(importer, source, store, options, plan)
    writer = StoreWriter(
        store,
        plan.capacity or len(plan.items),
        plan.modalities,
        plan.extra_arrays,
        shard_size=options.shard_size,
        chunk_size=options.chunk_size,
        overwrite=options.overwrite,
        allow_fewer=True,
    )
    checker, buffer, done = _Checker(plan), [], 0
    executor = None
    try:
        executor = _Executor(options, len(plan.items))
        report.payload["read_in"] = executor.where
        for result in executor.map(importer, plan.items, options):
            done += 1
            report.bytes_read += result.bytes_read
            if result.error is not None:
                if options.on_error == "raise":
                    raise ImportDataError(f"{importer.name} import of '{source}': {result.error}")
                report.skip(result.item.key, result.item.files, result.error)
            for patch in result.filtered:
                report.filtered[patch.reason] += 1
            for sample in result.samples:
                report.bytes_decoded += sum(a.nbytes for a in sample.arrays.values())
                problem = checker.problem(sample, result.item.files)
                if problem is None:
                    buffer.append(sample)
                elif options.on_error == "raise":
                    files = ", ".join(f"'{p}'" for p in result.item.files)
                    raise ImportDataError(f"{importer.name} import of '{source}': {files}: {problem}")
                else:
                    report.skip(sample.key, result.item.files, problem)
            if len(buffer) >= options.shard_size:
                _flush(writer, buffer)
            if progress is not None:
                progress(done, len(plan.items))
        _flush(writer, buffer)
        if writer.written == 0:
            raise ImportDataError(
                f"{importer.name} import of '{source}': no sample left to write "
                f"({len(report.skipped)} skipped{_first_skip(report)}, {sum(report.filtered.values())} filtered)"
            )
        stored = sum(f.stat().st_size for f in writer.tmp.rglob("*") if f.is_file())
        writer.add_file(REPORT_FILE, report.finish(writer.written, stored))
        attrs = {"importer": importer.name, "import_notes": list(plan.notes), **plan.attrs}
        try:
            path = writer.close(attrs, targets=plan.targets, dates=plan.dates, pairs=plan.pairs, split=plan.split)
        except StoreError as exc:
            if not report.skipped:
                raise
            # what is left after the skips does not make a store (e.g. no train row): say what was skipped
            raise StoreError(f"{exc}; after {len(report.skipped)} skipped items{_first_skip(report)}") from None
    except BaseException:
        writer.abort()
        raise
    finally:
        if executor is not None:
            executor.close()
    return path


def _first_skip(report: _Report) -> str:
    """``" (first: <reason>)"`` of the first skipped item, or nothing when none was skipped."""
    return f" (first: {report.skipped[0]['reason']})" if report.skipped else ""


def _flush(writer: StoreWriter, buffer: list[Sample]) -> None:
    if not buffer:
        return
    names = list(buffer[0].arrays)
    arrays = {name: np.stack([s.arrays[name] for s in buffer]) for name in names}
    table = pd.DataFrame([{"sample_key": s.key, **s.row} for s in buffer])
    writer.write(arrays, table)
    buffer.clear()


def read_report(store: Path) -> dict[str, Any]:
    """The import report saved with a store (``{}`` for stores that were not imported)."""
    path = Path(store) / REPORT_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def summary_line(report: dict[str, Any]) -> str:
    """One line of an import report: samples, time, throughput, skips and filtered patches."""
    filtered = sum(report.get("filtered", {}).values())
    return (
        f"{report['samples']} samples from {report['items']} items in {report['seconds']:.1f} s "
        f"({report['samples_per_second']:.0f} samples/s, {report['decoded_megabytes_per_second']:.1f} MB/s decoded, "
        f"{report['megabytes_per_second']:.1f} MB/s of listed files); "
        f"{report['skipped']} skipped, {filtered} patches filtered"
    )
