"""Reading whole scenes for ``eossl predict``: bands matched by name, stored values in physical units,
windowed reads, and the second date of a change model aligned to the first scene's grid.

A scene's bands are found by name: the GeoTIFF band descriptions, else the names the user gives in
file order, else (when the count is right) the file order is assumed, with a warning. Each band is
converted with its model modality's ``physical = (stored + offset) / scale`` (overridable); the file's
nodata value and the modality's become NaN. The second scene of a change model is read through a
:class:`rasterio.vrt.WarpedVRT` on the first scene's CRS, transform and size, so scenes of another
extent, resolution or CRS line up by their georeferencing. Reads are windowed: nothing here holds more
than the window asked for.
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from eossl.data.modality import Modality
from eossl.errors import ConfigError

SAMPLE_WINDOWS = 8
"""The scaling check reads this many windows per axis, evenly spread (the whole scene when it is small)."""
SAMPLE_SIZE = 64
"""The side of each sampled window, in pixels."""


def _normal(name: str) -> str:
    """A band name in a forgiving form: upper case, no separators, ``B04`` as ``B4``."""
    name = re.sub(r"[\s_\-]", "", name.upper())
    return re.sub(r"^B0+(\d)", r"B\1", name)


def match_bands(
    path: Path | str, descriptions: Sequence[str | None], wanted: Sequence[str], given: Sequence[str] | None = None
) -> tuple[list[int], str | None]:
    """The 1-based indexes of ``wanted`` bands in a file, and a warning when the order was assumed.

    Names come from ``given`` (the file's bands in order), else the file's ``descriptions``; names match
    exactly, else case-insensitively with leading zeros dropped (``B04`` is ``B4``). Without names a file
    with exactly ``len(wanted)`` bands is taken in model order. Raises :class:`ConfigError` naming the
    file, the missing bands and the bands found.
    """
    count = len(descriptions)
    if given is not None and len(given) != count:
        raise ConfigError(f"'{path}' has {count} bands but --bands names {len(given)}: {', '.join(given)}")
    names = [str(n) if n else "" for n in (given if given is not None else descriptions)]
    if not any(names):
        if count == len(wanted):
            message = (f"'{path}' has no band descriptions: assuming its {count} bands are the model's "
                       f"{', '.join(wanted)} in this order (pass --bands to name them)")  # fmt: skip
            return list(range(1, count + 1)), message
        raise ConfigError(f"'{path}' has {count} bands without descriptions; the model needs {len(wanted)} "
                          f"({', '.join(wanted)}): name the file's bands with --bands")  # fmt: skip
    normal = [_normal(n) for n in names]
    indexes, missing = [], []
    for band in wanted:
        if band in names:
            indexes.append(names.index(band) + 1)
        elif _normal(band) in normal:
            indexes.append(normal.index(_normal(band)) + 1)
        else:
            missing.append(band)
    if missing:
        found = ", ".join(n or "(unnamed)" for n in names)
        raise ConfigError(f"'{path}' lacks band(s) {', '.join(missing)} the model needs; it has {found}")
    return indexes, None


def window_starts(size: int, tile: int, stride: int) -> list[int]:
    """Window offsets along one axis: every ``stride`` pixels, the last shifted to end at ``size``."""
    if size <= tile:
        return [0]
    return [*range(0, size - tile, stride), size - tile]


def window_grid(height: int, width: int, tile: int, overlap: int, padded: bool = False) -> tuple[list[int], list[int]]:
    """Row and column offsets of ``tile``-px windows every ``tile - overlap`` px covering a raster: the last
    shifted to end at the edge, or with ``padded`` a regular grid whose last windows reach past it."""
    stride = tile - overlap
    if padded:
        return tuple([i * stride for i in range(max(1, math.ceil((n - tile) / stride) + 1))] for n in (height, width))
    return window_starts(height, tile, stride), window_starts(width, tile, stride)


@dataclasses.dataclass
class _Date:
    """One date's source: the dataset (or aligned VRT), the band indexes in model order and how each
    band's stored values become physical ones."""

    path: Path
    dataset: Any
    indexes: list[int]
    offset: np.ndarray
    scale: np.ndarray
    nodata: list[tuple[float, ...]]
    alpha: int | None = None


class Scene:
    """The input of a model read from one scene (or two dates), window by window, in physical units.

    ``modalities``: the model's input modalities in stacking order. With ``dates`` (a change model) scene
    ``i`` holds ``modalities[i]``; otherwise the one scene holds every modality's bands. ``bands``: names
    of the files' bands in file order (for files without descriptions); ``scale``/``offset`` override
    every modality's stored-to-physical conversion. Use as a context manager.
    """

    def __init__(
        self,
        paths: Sequence[Path | str],
        modalities: Sequence[Modality],
        dates: bool = False,
        bands: Sequence[str] | None = None,
        scale: float | None = None,
        offset: float | None = None,
    ) -> None:
        paths = [Path(p) for p in paths]
        if dates and len(paths) != len(modalities):
            raise ConfigError(f"this is a change model: pass {len(modalities)} scenes (dates "
                              f"{', '.join(m.name for m in modalities)}), got {len(paths)}")  # fmt: skip
        if not dates and len(paths) != 1:
            raise ConfigError(f"this model takes one scene, got {len(paths)} (only change models take two)")
        for path in paths:
            if not path.is_file():
                raise ConfigError(f"scene '{path}' does not exist")
        changes = {k: v for k, v in (("scale", scale), ("offset", offset)) if v is not None}
        self.modalities = [dataclasses.replace(m, **changes) for m in modalities]
        groups = [[m] for m in self.modalities] if dates else [self.modalities]
        self.warnings: list[str] = []
        self._open: list[Any] = []
        self.dates: list[_Date] = []
        try:
            first = self._dataset(paths[0])
            self.width, self.height = first.width, first.height
            self.crs, self.transform = first.crs, first.transform
            for i, (path, group) in enumerate(zip(paths, groups, strict=True)):
                self.dates.append(self._date(path, first if i == 0 else self._aligned(path, first, group), group,
                                             bands))  # fmt: skip
        except BaseException:
            self.close()
            raise
        self.band_labels = [f"{m.name}:{b}" if dates else b for m in self.modalities for b in m.bands]

    def _dataset(self, path: Path) -> Any:
        try:
            dataset = rasterio.open(path)
        except rasterio.errors.RasterioIOError as exc:
            raise ConfigError(f"scene '{path}' cannot be read as a raster: {exc}") from None
        self._open.append(dataset)
        return dataset

    def _aligned(self, path: Path, first: Any, group: list[Modality]) -> Any:
        """The second date warped onto the first scene's grid; outside its extent is nodata."""
        src = self._dataset(path)
        if src.crs is None or first.crs is None:
            raise ConfigError(f"'{path if src.crs is None else first.name}' has no CRS: two dates are aligned by "
                              f"their georeferencing")  # fmt: skip
        nodata = src.nodata if src.nodata is not None else group[0].nodata
        if nodata is None and np.issubdtype(np.dtype(src.dtypes[0]), np.floating):
            nodata = float("nan")
        vrt = WarpedVRT(src, crs=first.crs, transform=first.transform, width=first.width, height=first.height,
                        resampling=Resampling.bilinear, nodata=nodata, add_alpha=nodata is None)  # fmt: skip
        self._open.append(vrt)
        return vrt

    def _date(self, path: Path, dataset: Any, group: list[Modality], bands: Sequence[str] | None) -> _Date:
        wanted = [b for m in group for b in m.bands]
        descriptions, alpha = list(dataset.descriptions), None
        if isinstance(dataset, WarpedVRT) and dataset.nodata is None:  # the VRT's last band is its alpha
            descriptions, alpha = descriptions[:-1], dataset.count
        indexes, warning = match_bands(path, descriptions, wanted, bands)
        if warning:
            warnings.warn(warning, UserWarning, stacklevel=3)
            self.warnings.append(warning)
        per_band = [m for m in group for _ in m.bands]
        nodatavals = list(dataset.nodatavals)
        nodata = [
            tuple(v for v in (nodatavals[i - 1], m.nodata) if v is not None)
            for i, m in zip(indexes, per_band, strict=True)
        ]
        return _Date(path, dataset, indexes, np.array([m.offset for m in per_band], np.float32)[:, None, None],
                     np.array([m.scale for m in per_band], np.float32)[:, None, None], nodata, alpha)  # fmt: skip

    def read(self, window: Window) -> np.ndarray:
        """``[bands, h, w]`` float32 physical values of ``window`` (model band order, dates stacked); NaN for
        nodata and for the part of the window outside the scene."""
        col, row, w, h = int(window.col_off), int(window.row_off), int(window.width), int(window.height)
        out = np.full((sum(len(d.indexes) for d in self.dates), h, w), np.nan, np.float32)
        c0, r0, c1, r1 = max(col, 0), max(row, 0), min(col + w, self.width), min(row + h, self.height)
        if c1 <= c0 or r1 <= r0:
            return out
        inner = Window(c0, r0, c1 - c0, r1 - r0)
        channel = 0
        for date in self.dates:
            stored = date.dataset.read(date.indexes + ([date.alpha] if date.alpha else []), window=inner)
            alpha, stored = (stored[-1], stored[:-1]) if date.alpha else (None, stored)
            x = (stored.astype(np.float32) + date.offset) / date.scale
            for i, values in enumerate(date.nodata):
                for value in values:
                    x[i][np.isnan(stored[i]) if np.isnan(value) else stored[i] == value] = np.nan
            if alpha is not None:
                x[:, alpha == 0] = np.nan
            out[channel : channel + len(x), r0 - row : r1 - row, c0 - col : c1 - col] = x
            channel += len(x)
        return out

    @property
    def block_row_bytes(self) -> int:
        """Bytes of one row of the files' blocks (every band, every date): what reading a strip decodes."""
        return sum(d.dataset.block_shapes[0][0] * self.width * len(d.indexes) * np.dtype(d.dataset.dtypes[0]).itemsize
                   for d in self.dates)  # fmt: skip

    def read_windows(self, origins: Sequence[tuple[int, int]], tile: int) -> np.ndarray:
        """``[B, bands, tile, tile]`` of the windows at ``origins`` (row, col): one read per row of windows."""
        out = np.empty((len(origins), sum(len(d.indexes) for d in self.dates), tile, tile), np.float32)
        for row in sorted({r for r, _ in origins}):
            cols = [(i, c) for i, (r, c) in enumerate(origins) if r == row]
            left = min(c for _, c in cols)
            strip = self.read(Window(left, row, max(c for _, c in cols) + tile - left, tile))
            for i, c in cols:
                out[i] = strip[:, :, c - left : c - left + tile]
        return out

    def valid(self, x: np.ndarray) -> np.ndarray:
        """Pixels of ``x`` (``[..., bands, h, w]`` as :meth:`read` gives) that have data: some band finite on
        every date."""
        ok = np.ones(x.shape[:-3] + x.shape[-2:], bool)
        channel = 0
        for date in self.dates:
            ok &= np.isfinite(x[..., channel : channel + len(date.indexes), :, :]).any(axis=-3)
            channel += len(date.indexes)
        return ok

    def sample_stats(self) -> dict[str, list[float]]:
        """Per-band ``mean``, ``std``, ``p2`` and ``p98`` (physical units, valid pixels only) of a sparse grid
        of windows (the whole scene when it is small): cheap, and independent of the scene's size."""
        if self.width * self.height <= (SAMPLE_WINDOWS * SAMPLE_SIZE) ** 2:
            samples = [self.read(Window(0, 0, self.width, self.height))]
        else:
            cols = np.linspace(0, max(self.width - SAMPLE_SIZE, 0), SAMPLE_WINDOWS).astype(int)
            rows = np.linspace(0, max(self.height - SAMPLE_SIZE, 0), SAMPLE_WINDOWS).astype(int)
            samples = [self.read(Window(c, r, SAMPLE_SIZE, SAMPLE_SIZE)) for r in rows for c in cols]
        values = np.concatenate([s.reshape(s.shape[0], -1) for s in samples], axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bands give NaN statistics
            p2, p98 = np.nanpercentile(values, [2, 98], axis=1)
            stats = {"mean": np.nanmean(values, axis=1), "std": np.nanstd(values, axis=1), "p2": p2, "p98": p98}
        channel = 0
        for date in self.dates:
            if not np.isfinite(values[channel : channel + len(date.indexes)]).any():
                message = f"'{date.path}' has no data on the first scene's grid (sampled {len(samples)} windows)"
                warnings.warn(message, UserWarning, stacklevel=2)
                self.warnings.append(message)
            channel += len(date.indexes)
        return {k: [float(v) for v in s] for k, s in stats.items()}

    def close(self) -> None:
        """Close the files and VRTs (the VRTs first)."""
        for dataset in reversed(self._open):
            dataset.close()
        self._open = []

    def __enter__(self) -> Scene:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
