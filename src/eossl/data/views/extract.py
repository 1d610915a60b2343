"""Patch extraction for one connected component (a dask task): for each combination in emission order,
each grid patch inside its intersection not yet emitted (the component's R-tree) is read from every
tile of the combination onto the common grid (rasterio's warp; a plain window read where the tile is
on the grid's pixel lattice) and emitted when no date has more than ``max_nodata`` nodata pixels.

The result is a *part* folder, ``c<index>/``: ``pixels-<block>.npy`` (rows ``[N, C, H, W]`` in the
store's dtype, saved without pickle), ``rows.csv`` (one row per patch and date) and ``part.json``
(counts); it is written under a temporary name and renamed when complete, so a part that exists is
whole and a rerun skips it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eossl.data.importers.raster import invalid_share, open_raster
from eossl.data.modality import Modality
from eossl.data.views.combinations import Combination
from eossl.data.views.layout import Grid, PatchIndex, candidate_patches, patch_box
from eossl.data.views.options import ViewsOptions
from eossl.data.views.tiles import Tile, transform_geometry
from eossl.errors import ImportDataError

BLOCK_ROWS = 64
PART_FILE = "part.json"


@dataclass
class ComponentJob:
    """What one worker needs: the component's tiles and combinations (indices into ``tiles``)."""

    index: int
    tiles: list[Tile]
    combinations: list[Combination]
    grid: Grid
    options: ViewsOptions
    modality: Modality
    parts: str

    @property
    def folder(self) -> Path:
        return Path(self.parts) / f"c{self.index:06d}"


def part_done(job: ComponentJob) -> bool:
    """Whether the component's part is complete on disk."""
    return (job.folder / PART_FILE).is_file()


def extract_component(job: ComponentJob) -> dict[str, Any]:
    """Write the component's part (see the module docstring); returns its ``part.json`` counts."""
    final = job.folder
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        summary = _extract(job, tmp)
        (tmp / PART_FILE).write_text(json.dumps(summary, indent=2), encoding="utf-8")
        if final.exists():  # another run finished it meanwhile: theirs is as good (same plan)
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
        return summary
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _extract(job: ComponentJob, out: Path) -> dict[str, Any]:
    index, options, grid = PatchIndex(job.options.max_patch_overlap), job.options, job.grid
    rows: list[dict[str, Any]] = []
    block: list[np.ndarray] = []
    blocks, skipped, dates = 0, Counter(), Counter()
    with ExitStack() as stack:
        readers: dict[int, Any] = {}
        for combination in job.combinations:
            for corner in candidate_patches(combination, grid):
                polygon = patch_box(corner, grid)
                if index.blocked(polygon):
                    skipped["already emitted"] += 1
                    continue
                members = sorted(combination.tiles, key=lambda i: (job.tiles[i].time, job.tiles[i].id))
                for i in members:
                    if i not in readers:
                        readers[i] = stack.enter_context(open_raster(job.tiles[i].path, require_crs=True))
                        _check_tile(job.tiles[i], readers[i], job.modality)
                stacked = [_read_patch(readers[i], job.tiles[i], corner, grid, job.modality, options) for i in members]
                if max(invalid_share(a, job.modality.nodata) for a in stacked) > options.max_nodata:
                    skipped["nodata"] += 1
                    continue
                index.add(polygon)
                dates[len(members)] += 1
                rows.extend(_rows(job, combination, members, corner, len(index) - 1))
                block.extend(stacked)
                if len(block) >= BLOCK_ROWS:
                    blocks = _save_block(out, blocks, block)
        _save_block(out, blocks, block)
    table = pd.DataFrame(rows, columns=ROW_COLUMNS)
    table.to_csv(out / "rows.csv", index=False)
    return {"component": job.index, "patches": len(index), "rows": len(table),
            "dates": {str(k): v for k, v in sorted(dates.items())}, "skipped": dict(skipped)}  # fmt: skip


ROW_COLUMNS = ["patch", "time", "tile", "n_dates", "component", "combination", "crs", "x", "y", "lon", "lat",
               "footprint"]  # fmt: skip


def _rows(job: ComponentJob, combination: Combination, members: list[int], corner: np.ndarray, patch: int) -> list:
    polygon = patch_box(corner, job.grid)
    lonlat = transform_geometry(polygon, job.grid.crs, "EPSG:4326")
    centre = lonlat.centroid
    names = "+".join(job.tiles[i].id for i in sorted(combination.tiles))
    return [{"patch": patch, "time": job.tiles[i].time.isoformat(), "tile": job.tiles[i].id, "n_dates": len(members),
             "component": job.index, "combination": names, "crs": job.grid.crs, "x": float(corner[0]),
             "y": float(corner[1]), "lon": round(centre.x, 7), "lat": round(centre.y, 7),
             "footprint": lonlat.wkt} for i in members]  # fmt: skip


def _save_block(out: Path, number: int, block: list[np.ndarray]) -> int:
    if not block:
        return number
    np.save(out / f"pixels-{number:05d}.npy", np.stack(block), allow_pickle=False)
    block.clear()
    return number + 1


def _check_tile(tile: Tile, reader: Any, modality: Modality) -> None:
    if reader.count != modality.num_bands:
        raise ImportDataError(f"'{tile.path}': {reader.count} bands, but the store's modality '{modality.name}' has "
                              f"{modality.num_bands} ({', '.join(modality.bands[:6])}...)")  # fmt: skip
    if reader.crs.to_string() != tile.crs:
        raise ImportDataError(f"'{tile.path}': CRS {reader.crs.to_string()} differs from the planned {tile.crs} "
                              "(the file changed since it was listed)")  # fmt: skip


def _read_patch(reader: Any, tile: Tile, corner: np.ndarray, grid: Grid, modality: Modality, options) -> np.ndarray:
    """``[C, P, P]`` of ``tile`` on the grid patch at ``corner``, nodata outside the tile."""
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin
    from rasterio.warp import reproject
    from rasterio.windows import Window, from_bounds

    size, fill = grid.patch, _fill(modality)
    transform = reader.transform
    col, row = (corner[0] - transform.c) / transform.a, (corner[1] - transform.f) / transform.e
    if (tile.crs == grid.crs and np.isclose(transform.a, grid.resolution) and np.isclose(-transform.e, grid.resolution)
            and np.isclose(col, round(col), atol=1e-6) and np.isclose(row, round(row), atol=1e-6)):  # fmt: skip
        window = Window(round(col), round(row), size, size)
        return _as_store(_read_window(reader, window, _source_fill(reader, fill)), reader, tile, modality)
    destination = np.full((reader.count, size, size), fill, dtype=np.float64)
    target = from_origin(float(corner[0]), float(corner[1]), grid.resolution, grid.resolution)
    bounds = transform_geometry(patch_box(corner, grid), grid.crs, tile.crs).bounds
    margin = 2 * max(abs(transform.a), grid.resolution)
    window = from_bounds(bounds[0] - margin, bounds[1] - margin, bounds[2] + margin, bounds[3] + margin, transform)
    col0, row0 = math.floor(window.col_off), math.floor(window.row_off)
    window = Window(col0, row0, math.ceil(window.col_off + window.width) - col0,
                    math.ceil(window.row_off + window.height) - row0)  # fmt: skip
    source = _read_window(reader, window, _source_fill(reader, fill))
    reproject(source.astype(np.float64), destination, src_transform=reader.window_transform(window),
              src_crs=reader.crs, src_nodata=_source_fill(reader, fill), dst_transform=target, dst_crs=grid.crs,
              dst_nodata=fill, resampling=Resampling[options.resampling])  # fmt: skip
    return _as_store(destination, reader, tile, modality)


def _read_window(reader: Any, window: Any, fill: float) -> np.ndarray:
    """``reader.read(window)`` with ``fill`` outside the raster (a plain read of the overlap: rasterio's
    ``boundless`` reads build a VRT each time, several ms)."""
    from rasterio.windows import Window

    out = np.full((reader.count, int(window.height), int(window.width)), fill, dtype=reader.dtypes[0])
    col0, row0 = max(0, int(window.col_off)), max(0, int(window.row_off))
    col1 = min(reader.width, int(window.col_off + window.width))
    row1 = min(reader.height, int(window.row_off + window.height))
    if col1 > col0 and row1 > row0:
        part = reader.read(window=Window(col0, row0, col1 - col0, row1 - row0))
        out[:, row0 - int(window.row_off) : row1 - int(window.row_off),
            col0 - int(window.col_off) : col1 - int(window.col_off)] = part  # fmt: skip
    return out


def _fill(modality: Modality) -> float:
    return float("nan") if modality.nodata is None else float(modality.nodata)


def _source_fill(reader: Any, fill: float) -> float:
    return fill if reader.nodata is None else float(reader.nodata)


def _as_store(values: np.ndarray, reader: Any, tile: Tile, modality: Modality) -> np.ndarray:
    """Values in the store's dtype: the tile's nodata becomes the store's; values that do not fit are an error."""
    fill = _fill(modality)
    values = values.astype(np.float64)
    if reader.nodata is not None and not np.isnan(reader.nodata):
        values[values == reader.nodata] = fill
    dtype = np.dtype(modality.dtype)
    if np.issubdtype(dtype, np.integer):
        finite = np.isfinite(values)
        if np.isnan(fill):
            raise ImportDataError(f"modality '{modality.name}' is {dtype} but has no nodata value for empty pixels")
        values[~finite] = fill
        info = np.iinfo(dtype)
        if values.min() < info.min or values.max() > info.max:
            raise ImportDataError(f"'{tile.path}': values {values.min():g}..{values.max():g} do not fit the store's "
                                  f"{dtype} (modality '{modality.name}')")  # fmt: skip
        values = np.rint(values)
    return values.astype(dtype)
