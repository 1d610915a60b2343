"""``eossl views build``: plan, extract every connected component in parallel (dask), then stream the
parts into a v2 store whose places have several dates (``Dates("location_id", "time")``).

Resumable: parts live in a work folder (default ``STORE.views-work``) with a manifest of the plan's
fingerprint (tiles, their sizes and times of change, options, modality); a rerun of the same plan
skips the components whose part is complete, and the store is assembled from the parts in component
order, so a resumed build writes the same store as an uninterrupted one. Across components (which
only touch by less than ``min_overlap_area`` or within one pass) an R-tree in the equal-area CRS
drops a patch another component already emitted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely

from eossl.data.modality import Modality
from eossl.data.sensors import sensor_from_yaml, sensor_modality
from eossl.data.store import StoreWriter
from eossl.data.targets import Dates
from eossl.data.views.extract import PART_FILE, ComponentJob, extract_component, part_done
from eossl.data.views.layout import PatchIndex
from eossl.data.views.options import EQUAL_AREA_CRS, ViewsOptions
from eossl.data.views.plan import ViewsPlan, make_plan
from eossl.data.views.tiles import TileSet, transform_geometry
from eossl.errors import ImportDataError, StoreError
from eossl.io import OutputLock, write_text_atomic

REPORT_FILE = "views_report.json"
MANIFEST_FILE = "manifest.json"
MAX_LOCAL_WORKERS = 8


@dataclass
class BuildRequest:
    """What to build: ``workers`` of a dask ``LocalCluster`` (``None``: one per core, at most 8, or this
    process for a single component; ``0``: this process), or ``scheduler``, an existing cluster's
    address (its workers must see ``work``)."""

    source: Path
    store: Path
    options: ViewsOptions = field(default_factory=ViewsOptions)
    work: Path | None = None
    workers: int | None = None
    scheduler: str | None = None
    overwrite: bool = False
    keep_work: bool = False

    @property
    def work_folder(self) -> Path:
        return self.work or self.store.with_name(f"{self.store.name}.views-work")


@dataclass
class BuildResult:
    """What a build did: ``components_run`` were extracted now, the others reused from the work folder."""

    store: Path
    plan: dict[str, Any]
    components: int
    components_run: int
    patches: int
    samples: int
    dates: dict[str, int]
    skipped: dict[str, int]
    seconds: float
    where: str
    extract_seconds: float = 0.0


def views_modality(tileset: TileSet, source: Path, options: ViewsOptions) -> Modality:
    """The store's modality: ``options.sensor`` (preset or YAML), else ``sensor.yaml`` beside the tiles,
    else described by the first tile (its dtype, band descriptions, nodata, resolution)."""
    folder = source if source.is_dir() else source.parent
    if options.sensor is not None:
        relative = folder / options.sensor
        beside = relative.is_file() and not Path(options.sensor).is_file()
        modality = sensor_modality(relative if beside else options.sensor)
    elif (folder / "sensor.yaml").is_file():
        modality = sensor_from_yaml(folder / "sensor.yaml")
    else:
        import rasterio

        tile = tileset.tiles[0]
        with rasterio.open(tile.path) as src:
            bands = tuple(d or f"B{i + 1}" for i, d in enumerate(src.descriptions))
            nodata = None if src.nodata is None or np.isnan(src.nodata) else float(src.nodata)
            gsd = (tile.resolution,) * len(bands)
            modality = Modality(tile.sensor or "image", "optical", bands, src.dtypes[0], gsd, nodata=nodata,
                                units="as in the tiles")  # fmt: skip
    return replace(modality, name=options.modality) if options.modality else modality


def build_views(request: BuildRequest, progress: Callable[[int, int], None] | None = None) -> BuildResult:
    """Plan, extract and assemble (see the module docstring)."""
    start = time.perf_counter()
    if request.store.exists() and not request.overwrite:
        raise StoreError(f"store '{request.store}' already exists (use --overwrite, or overwrite=True, to replace it)")
    plan = make_plan(request.source, request.options)
    modality = views_modality(plan.tileset, Path(request.source), request.options)
    work = request.work_folder
    work.mkdir(parents=True, exist_ok=True)
    with OutputLock(work, "eossl views build"):
        _check_manifest(work, _fingerprint(plan, modality), request.overwrite)
        jobs = [ComponentJob(c.index, [plan.tileset.tiles[i] for i in c.tiles],
                             [replace(comb, tiles=tuple(c.tiles.index(t) for t in comb.tiles))
                              for comb in c.combinations], c.grid, request.options, modality, str(work / "parts"))
                for c in plan.components if sum(c.expected.values())]  # fmt: skip
        pending = [job for job in jobs if not part_done(job)]
        extract_start = time.perf_counter()
        where = _run(pending, request, progress, total=len(jobs))
        extract_seconds = time.perf_counter() - extract_start
        result = _assemble(plan, jobs, modality, request)
    if not request.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    result.components_run, result.where = len(pending), where
    result.extract_seconds = round(extract_seconds, 3)
    result.seconds = round(time.perf_counter() - start, 3)
    return result


def _fingerprint(plan: ViewsPlan, modality: Modality) -> str:
    tiles = []
    for tile in plan.tileset.tiles:
        stat = os.stat(tile.path)
        tiles.append([tile.id, tile.path, stat.st_size, stat.st_mtime_ns, tile.time.isoformat()])
    payload = {"options": plan.options.model_dump(mode="json"), "tiles": tiles, "modality": asdict(modality)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _check_manifest(work: Path, fingerprint: str, overwrite: bool) -> None:
    manifest = work / MANIFEST_FILE
    if manifest.is_file():
        try:
            known = json.loads(manifest.read_text(encoding="utf-8")).get("fingerprint")
        except (OSError, ValueError):
            known = None
        if known == fingerprint:
            return
        if not overwrite:
            raise ImportDataError(f"work folder '{work}' holds parts of another plan (other tiles, files or options): "
                                  "remove it, choose another with --work, or pass --overwrite")  # fmt: skip
        shutil.rmtree(work / "parts", ignore_errors=True)
    write_text_atomic(manifest, json.dumps({"fingerprint": fingerprint}, indent=2))


def _run(jobs: list[ComponentJob], request: BuildRequest, progress, total: int) -> str:
    """Extract ``jobs`` (largest first) in this process or on dask workers; returns where."""
    jobs = sorted(jobs, key=lambda j: -len(j.combinations) * len(j.tiles))
    done = total - len(jobs)
    local = request.scheduler is None and (request.workers == 0 or (request.workers is None and len(jobs) <= 1))
    if local:
        for job in jobs:
            extract_component(job)
            done += 1
            if progress:
                progress(done, total)
        return "this process"
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if request.scheduler:
        client, where = Client(request.scheduler), f"dask scheduler {request.scheduler}"
    else:
        workers = request.workers or min(os.cpu_count() or 1, MAX_LOCAL_WORKERS)
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)  # fmt: skip
        client, where = Client(cluster), f"dask LocalCluster of {workers} workers"
    try:
        futures = [client.submit(extract_component, job, pure=False) for job in jobs]
        for future in as_completed(futures):
            future.result()  # a worker's error (naming the tile) is raised here
            done += 1
            if progress:
                progress(done, total)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return where


def _assemble(plan: ViewsPlan, jobs: list[ComponentJob], modality: Modality, request: BuildRequest) -> BuildResult:
    """Stream the parts, in component order, into the store; drop patches another component emitted."""
    parts = [(job, json.loads((job.folder / PART_FILE).read_text(encoding="utf-8"))) for job in jobs]
    capacity = sum(summary["rows"] for _, summary in parts)
    if capacity == 0:
        skipped = sum((Counter(s["skipped"]) for _, s in parts), Counter())
        raise ImportDataError(f"'{request.source}': no patch to emit ({plan.statistics()['expected_patches']} "
                              f"expected, skipped: {dict(skipped) or 'none'}); check patch_size, max_nodata and the "
                              "tiles' overlaps (eossl views plan)")  # fmt: skip
    touching = _touching_components([job.index for job in jobs], plan)
    writer = StoreWriter(request.store, capacity, {modality.name: modality}, chunk_size=16, overwrite=request.overwrite,
                         allow_fewer=True)  # fmt: skip
    index = PatchIndex(request.options.max_patch_overlap)
    location, dates, skipped = 0, Counter(), Counter()
    try:
        for job, summary in parts:
            skipped.update(summary["skipped"])
            rows = pd.read_csv(job.folder / "rows.csv", dtype={"tile": str, "combination": str})
            keep = np.ones(len(rows), bool)
            locations = np.zeros(len(rows), int)
            for _patch, members in rows.groupby("patch", sort=False).indices.items():
                if job.index in touching:
                    footprint = transform_geometry(shapely.from_wkt(rows["footprint"].iat[members[0]]), "EPSG:4326",
                                                   EQUAL_AREA_CRS)  # fmt: skip
                    if index.blocked(footprint):
                        keep[members] = False
                        skipped["emitted by another component"] += 1
                        continue
                    index.add(footprint)
                locations[members] = location
                dates[len(members)] += 1
                location += 1
            _write_part(writer, job, rows, keep, locations, modality)
        dates = Counter({str(k): v for k, v in sorted(dates.items())})
        writer.add_file(REPORT_FILE, json.dumps({"plan": plan.statistics(), "dates": dict(dates),
                                                 "skipped": dict(skipped)}, indent=2))  # fmt: skip
        attrs = {"importer": "views", "views": {"options": request.options.model_dump(mode="json"),
                                                "source": str(request.source)}}  # fmt: skip
        path = writer.close(attrs, dates=Dates("location_id", "time"))
    except BaseException:
        writer.abort()
        raise
    return BuildResult(path, plan.statistics(), len(plan.components), 0, location, writer.written,
                       dict(dates), dict(skipped), 0.0, "")  # fmt: skip


def _write_part(writer: StoreWriter, job: ComponentJob, rows: pd.DataFrame, keep: np.ndarray, locations: np.ndarray,
                modality: Modality) -> None:  # fmt: skip
    offset = 0
    for block in sorted(job.folder.glob("pixels-*.npy")):
        pixels = np.load(block, allow_pickle=False)
        span = slice(offset, offset + len(pixels))
        offset += len(pixels)
        chosen = keep[span]
        if not chosen.any():
            continue
        table = rows.iloc[span][chosen].drop(columns=["patch"]).reset_index(drop=True)
        table.insert(0, "location_id", locations[span][chosen])
        writer.write({modality.name: pixels[chosen]}, table)
    if offset != len(rows):
        raise StoreError(f"part '{job.folder}' is damaged: {offset} pixel rows for {len(rows)} table rows; "
                         "delete it and run again")  # fmt: skip


def _touching_components(indices: list[int], plan: ViewsPlan) -> set[int]:
    """Components whose tiles' footprints intersect another component's (only they need the global R-tree)."""
    hulls = [shapely.union_all([plan.tileset.tiles[i].footprint for i in plan.components[c].tiles]) for c in indices]
    tree = shapely.STRtree(hulls)
    left, right = tree.query(hulls, predicate="intersects")
    return {indices[i] for i, j in zip(left, right, strict=True) if i != j}
