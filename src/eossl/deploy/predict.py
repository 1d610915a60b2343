"""``eossl predict``: a task model (or, with ``features``, an exported encoder) applied to whole scenes.

Windows of ``tile`` px every ``tile - overlap`` px (:func:`eossl.deploy.scene.window_grid`) are run in
row-major batches. Class probabilities (softmax; sigmoid for multi-label) or values are accumulated as
sums weighted by :func:`blend_weights` (1 inside a tile, tapering linearly to a small epsilon at its
edges) and divided by the weight sum; pooled tasks paint each tile's output over its window the same
way. Only rows that later windows still touch are held; finished rows are written with windowed
writes, so memory depends on the scene's width, not on its size.

Outputs are COGs on the first scene's grid: class ids (uint8, nodata 255, class names in the
``CLASS_NAMES`` tag), per-class probabilities (float32; ``OUT.probabilities.tif`` with ``both``) or values
(float32, NaN nodata); pixels without data in any band (on any date) are nodata. Each is written to a
tiled GeoTIFF beside its target, converted by GDAL's COG driver (overviews) and renamed over it.
"""

from __future__ import annotations

import json
import math
import os
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
import rasterio.shutil
import torch
from rasterio.transform import Affine
from rasterio.windows import Window

from eossl.data.normalize import check_scaling
from eossl.deploy.scene import Scene, window_grid
from eossl.errors import ConfigError
from eossl.training import default_device

EPSILON = 1e-3
"""The blending weight at a tile's outermost pixels (never 0, so the scene's edges have a value)."""
BLOCK_ROWS = 16
"""Block height of the temporary GeoTIFF: the writer flushes whole blocks of this many rows."""
GDAL_CACHE_BYTES = (64 * 2**20, 512 * 2**20)
"""GDAL's block cache while predicting: 1.3 rows of the scene's blocks (each decoded once), within these."""
CLASS_NODATA = 255

Output = Literal["classes", "probabilities", "both"]


@dataclass
class PredictRequest:
    """What to predict: ``model`` (a task-model folder, or with ``features`` an ``eossl export`` folder)
    on ``scenes`` (one, or the two dates of a change model) into ``out``.

    ``tile`` defaults to the model's patch size, ``overlap`` to ``tile // 4`` (0 with ``features``).
    ``bands``: the files' band names in file order, for files without band descriptions. ``output``:
    class ids, per-class probabilities, or both (class tasks). ``task``: which task of the model
    (default: its only one). ``scale``/``offset`` override the model modalities' stored-to-physical
    conversion ``(stored + offset) / scale``.
    """

    model: Path
    scenes: list[Path]
    out: Path
    tile: int | None = None
    overlap: int | None = None
    batch_size: int = 16
    bands: list[str] | None = None
    output: Output = "classes"
    task: str | None = None
    features: bool = False
    overwrite: bool = False
    device: str = "auto"
    scale: float | None = None
    offset: float | None = None


@dataclass
class PredictSummary:
    """What was written (``outputs``: every file, ``out`` first) and how long and how much memory it took."""

    out: Path
    tiles: int
    seconds: float
    tiles_per_second: float
    peak_rss_mb: float
    warnings: list[str] = field(default_factory=list)
    width: int = 0
    height: int = 0
    outputs: list[Path] = field(default_factory=list)


def blend_weights(tile: int, overlap: int) -> np.ndarray:
    """The ``[tile, tile]`` blending weight: 1 inside, tapering linearly over ``overlap`` pixels to
    :data:`EPSILON` at the edges (1 everywhere without overlap)."""
    distance = np.minimum(np.arange(tile), np.arange(tile)[::-1]).astype(np.float32)
    ramp = np.clip((distance + 0.5) / max(overlap, 1), EPSILON, 1.0) if overlap else np.ones(tile, np.float32)
    return np.outer(ramp, ramp).astype(np.float32)


@dataclass
class _Product:
    """One output file: its bands, type and how blended channels become its pixels."""

    path: Path
    dtype: str
    nodata: float
    descriptions: list[str]
    tags: dict[str, str]
    resampling: str
    convert: Callable[[np.ndarray], np.ndarray]


class _RowWriter:
    """A product's rows into a temporary tiled GeoTIFF beside its target, each block written once (rows are
    buffered until whole blocks of rows are complete); :meth:`finish` converts it to a COG."""

    def __init__(self, product: _Product, profile: dict[str, Any]) -> None:
        self.product, self.row, self.pending = product, 0, []
        made = [tempfile.mkstemp(prefix=f".{product.path.name}.", suffix=s, dir=product.path.parent) for s in "tc"]
        for handle, _ in made:
            os.close(handle)
        self.tmp, self.cog = (Path(name) for _, name in made)  # the GeoTIFF, the COG
        meta = {**profile, "count": len(product.descriptions), "dtype": product.dtype, "nodata": product.nodata}
        self.dataset = rasterio.open(self.tmp, "w", **meta)
        self.dataset.descriptions = tuple(product.descriptions)
        self.dataset.update_tags(**product.tags)

    def add(self, blended: np.ndarray, valid: np.ndarray, last: bool = False) -> None:
        """Append the pixels of blended rows (nodata where not ``valid``); write every complete block row
        (everything when ``last``)."""
        rows = self.product.convert(blended).astype(self.product.dtype)
        rows[:, ~valid] = self.product.nodata
        self.pending.append(rows)
        count = sum(p.shape[1] for p in self.pending)
        ready = count if last else count - count % BLOCK_ROWS
        if ready:
            block = np.concatenate(self.pending, axis=1)
            self.dataset.write(block[:, :ready], window=Window(0, self.row, block.shape[2], ready))
            self.row += ready
            self.pending = [block[:, ready:]] if ready < count else []

    def finish(self) -> None:
        """Close the GeoTIFF and convert it to a COG (GDAL's driver builds the overviews)."""
        self.dataset.close()
        size = 512 if max(self.dataset.width, self.dataset.height) >= 4096 else 256
        rasterio.shutil.copy(self.tmp, self.cog, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=size, BIGTIFF="IF_SAFER",
                             OVERVIEW_RESAMPLING=self.product.resampling)  # fmt: skip

    def cleanup(self) -> None:
        self.dataset.close()
        for path in (self.tmp, self.cog):
            for leftover in (path, path.with_name(path.name + ".aux.xml")):
                leftover.unlink(missing_ok=True)


class _Strip:
    """Weighted sums of the rows still open: ``[channels, rows, width]`` from row ``top`` down."""

    def __init__(self, channels: int, width: int) -> None:
        self.top, self.width = 0, width
        self.sums = np.zeros((channels, 0, width), np.float32)
        self.weight = np.zeros((0, width), np.float32)
        self.valid = np.zeros((0, width), bool)

    def add(self, row: int, col: int, values: np.ndarray, weight: np.ndarray, valid: np.ndarray) -> None:
        """Blend ``values`` (``[channels, h, w]``, cropped to the scene) in at ``(row, col)``."""
        h, w = weight.shape
        grow = row + h - self.top - self.weight.shape[0]
        if grow > 0:
            self.sums = np.concatenate([self.sums, np.zeros((len(self.sums), grow, self.width), np.float32)], 1)
            self.weight = np.concatenate([self.weight, np.zeros((grow, self.width), np.float32)])
            self.valid = np.concatenate([self.valid, np.zeros((grow, self.width), bool)])
        rows, cols = slice(row - self.top, row - self.top + h), slice(col, col + w)
        self.sums[:, rows, cols] += values * weight
        self.weight[rows, cols] += weight
        self.valid[rows, cols] |= valid

    def take(self, until: int) -> tuple[np.ndarray, np.ndarray]:
        """The blended values and validity of rows ``top .. until`` (finished), dropped from the strip."""
        n = max(0, min(until - self.top, self.weight.shape[0]))
        blended = self.sums[:, :n] / np.maximum(self.weight[:n], 1e-12)
        valid = self.valid[:n].copy()
        self.sums, self.weight, self.valid = self.sums[:, n:].copy(), self.weight[n:].copy(), self.valid[n:].copy()
        self.top += n
        return blended, valid


def _products(request: PredictRequest, task: Any, class_names: list[str]) -> list[_Product]:
    """The files a task's prediction is written to, by kind and ``request.output``."""
    out, kind = Path(request.out), task.kind.name
    if not task.kind.classes:
        return [_Product(out, "float32", math.nan, [task.name], {"TASK": task.name}, "average",
                         lambda v: v[:1])]  # fmt: skip
    names = class_names if len(class_names) == task.num_outputs() else [f"class_{i}" for i in range(task.num_outputs())]
    tags = {"TASK": task.name, "KIND": kind, "CLASS_NAMES": json.dumps(names)}
    probabilities = _Product(out, "float32", math.nan, names, tags, "average", lambda v: v)
    if kind == "multi-label":  # one 0/1 band per class
        classes = _Product(out, "uint8", CLASS_NODATA, names, tags, "nearest", lambda v: (v > 0.5).astype(np.uint8))
    else:
        classes = _Product(out, "uint8", CLASS_NODATA, [task.name], tags, "nearest",
                           lambda v: v.argmax(0)[None].astype(np.uint8))  # fmt: skip
    if len(names) >= CLASS_NODATA:
        raise ConfigError(f"task '{task.name}' has {len(names)} classes: class ids are written as uint8 (< 255)")
    if request.output == "classes":
        return [classes]
    if request.output == "probabilities":
        return [probabilities]
    probabilities.path = out.with_name(f"{out.stem}.probabilities.tif")
    return [classes, probabilities]


def _task_runner(request: PredictRequest, device: torch.device) -> tuple[Any, Callable, list[_Product], int]:
    """The model's input modalities and dates, a function from a batch to blended channels, the products."""
    from eossl.deploy.task_folder import load_task_model

    model = load_task_model(request.model)
    names = [t.name for t in model.tasks]
    chosen = request.task or (names[0] if len(names) == 1 else "")
    if chosen not in names:
        what = f"no task '{request.task}'" if request.task else f"{len(names)} tasks: choose one with --task"
        raise ConfigError(f"model '{request.model}' has {what} (it has: {', '.join(names)})")
    task = next(t for t in model.tasks if t.name == chosen)
    class_names = list(task.target.class_names or model.entry.get("class_names") or [])
    model.model.to(device)
    kind = task.kind.name

    @torch.no_grad()
    def run(x: torch.Tensor) -> np.ndarray:
        y = model(x)[task.name].float()  # on the model's device, under the autocast of its saved metrics
        if kind in ("segmentation", "change", "single-label"):
            y = y.softmax(1)
        elif kind == "multi-label":
            y = y.sigmoid()
        elif y.dim() in (1, 3):  # regression [B], pixel regression [B, H, W]
            y = y.unsqueeze(1)
        if y.dim() == 4 and y.shape[-2:] != x.shape[-2:]:
            y = torch.nn.functional.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return y.cpu().numpy()

    return model, run, _products(request, task, class_names), task.num_outputs()


def _feature_runner(request: PredictRequest, device: torch.device) -> tuple[Any, Callable, list[_Product], int]:
    from eossl.checkpoints import load_pretrained_encoders
    from eossl.data.normalize import normalize_input

    pre = next(iter(load_pretrained_encoders(request.model).values()))
    encoder = pre.encoder.eval().to(device)
    normalizer = pre.normalizer.to(device)

    @torch.no_grad()
    def run(x: torch.Tensor) -> np.ndarray:
        return encoder(normalize_input(normalizer, pre.modality, x.to(device))).float().cpu().numpy()

    dim = int(encoder.num_features)
    product = _Product(Path(request.out), "float32", math.nan, [f"feature_{i}" for i in range(dim)],
                       {"ENCODER": pre.encoder_name}, "average", lambda v: v)  # fmt: skip
    return pre, run, [product], dim


def _peak_rss_mb() -> float:
    """This process's peak resident set size (``VmHWM``; ``ru_maxrss`` where /proc is missing)."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
        return next(int(line.split()[1]) for line in lines if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sizes(request: PredictRequest, model: Any) -> tuple[int, int]:
    """The tile and overlap: as requested, else the model's patch size and a quarter of it (0 for features)."""
    if request.tile:
        tile = int(request.tile)
    else:
        tile = int(model.encoder_config.get("img_size") or 224) if request.features else model.image_size
    overlap = request.overlap if request.overlap is not None else (0 if request.features else tile // 4)
    if tile < 1 or not 0 <= overlap < tile or request.batch_size < 1:
        raise ConfigError(f"tile {tile}, overlap {overlap}, batch size {request.batch_size}: need tile >= 1, "
                          f"0 <= overlap < tile and batch size >= 1")  # fmt: skip
    return tile, overlap


def predict(request: PredictRequest, progress: Callable[[int, int], None] | None = None) -> PredictSummary:
    """Run ``request`` (see the module docstring); ``progress(done_tiles, total_tiles)`` after each batch."""
    started = time.perf_counter()
    device = default_device() if request.device == "auto" else torch.device(request.device)
    model, run, products, channels = (_feature_runner if request.features else _task_runner)(request, device)
    for product in products:
        if product.path.exists() and not request.overwrite:
            raise ConfigError(f"'{product.path}' already exists: choose another output or pass --overwrite")
    tile, overlap = _sizes(request, model)
    with Scene(request.scenes, model.bands, bool(getattr(model, "dates", [])), request.bands, request.scale,
               request.offset) as scene, rasterio.Env(GDAL_CACHEMAX=int(np.clip(
                   1.3 * scene.block_row_bytes, *GDAL_CACHE_BYTES))):  # fmt: skip
        stats = scene.sample_stats()
        message = check_scaling(f"scene '{request.scenes[0]}'", model.stats, stats, scene.band_labels) if {
            "mean", "std"} <= set(model.stats) else None  # fmt: skip
        found = [*scene.warnings, *([message] if message else [])]
        ys, xs = window_grid(scene.height, scene.width, tile, overlap, padded=request.features)
        centred = Affine.translation(overlap / 2, overlap / 2) @ Affine.scale(tile - overlap)  # a pixel per window
        transform = scene.transform @ centred if request.features else scene.transform
        out_h, out_w = (len(ys), len(xs)) if request.features else (scene.height, scene.width)
        profile = {"driver": "GTiff", "width": out_w, "height": out_h, "crs": scene.crs, "transform": transform,
                   "tiled": True, "blockxsize": 256, "blockysize": BLOCK_ROWS, "compress": "deflate",
                   "BIGTIFF": "IF_SAFER"}  # fmt: skip
        Path(request.out).parent.mkdir(parents=True, exist_ok=True)
        windows = [(y, x) for y in ys for x in xs]
        row_of, col_of = {y: i for i, y in enumerate(ys)}, {x: i for i, x in enumerate(xs)}
        weight, strip = blend_weights(tile, overlap), _Strip(channels, out_w)
        writers: list[_RowWriter] = []
        try:
            for product in products:
                writers.append(_RowWriter(product, profile))
            for start in range(0, len(windows), request.batch_size):
                batch = windows[start : start + request.batch_size]
                x = scene.read_windows(batch, tile)
                for (r, c), values, ok in zip(batch, run(torch.from_numpy(x)), scene.valid(x), strict=True):
                    if request.features:  # one pixel per window
                        strip.add(row_of[r], col_of[c], values[:, None, None], np.ones((1, 1), np.float32),
                                  ok.any()[None, None])  # fmt: skip
                        continue
                    h, w = min(tile, scene.height - r), min(tile, scene.width - c)
                    values = values[:, :h, :w] if values.ndim == 3 else values[:, None, None]
                    strip.add(r, c, values, weight[:h, :w], ok[:h, :w])
                following = start + request.batch_size
                until = out_h  # the rows above the next window are final
                if following < len(windows):
                    until = row_of[windows[following][0]] if request.features else windows[following][0]
                blended, ok = strip.take(until)
                for writer in writers:
                    writer.add(blended, ok, last=until == out_h)
                if progress is not None:
                    progress(min(following, len(windows)), len(windows))
            for writer in writers:
                writer.finish()
            umask = os.umask(0)
            os.umask(umask)
            for writer in writers:
                os.chmod(writer.cog, 0o666 & ~umask)  # mkstemp makes it private; the result is an ordinary file
                os.replace(writer.cog, writer.product.path)
        finally:
            for writer in writers:
                writer.cleanup()
    seconds = time.perf_counter() - started
    return PredictSummary(Path(request.out), len(windows), seconds, len(windows) / max(seconds, 1e-9), _peak_rss_mb(),
                          found, scene.width, scene.height, [p.path for p in products])  # fmt: skip
