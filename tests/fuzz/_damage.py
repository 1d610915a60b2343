"""Ways to damage a raster, as hypothesis strategies of :class:`RasterDamage` (each applied to one file).

``bytes``: the file replaced by random bytes (some starting with a TIFF signature); ``truncate``: cut
at a random offset; ``flip``: a few bytes overwritten at random offsets (header and pixel data);
``empty``; ``delete``; ``rewrite``: rewritten with rasterio in a random dtype, band count, size,
CRS and nodata tag, holding random, constant, extreme, NaN or infinite values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

DTYPES = (
    "uint8",
    "int8",
    "uint16",
    "int16",
    "uint32",
    "int32",
    "int64",
    "uint64",
    "float32",
    "float64",
    "complex64",
)
FILLS = ("random", "typical", "small", "zeros", "max", "min", "nan", "inf", "-inf", "some-nan", "huge")
TIFF_SIGNATURES = (b"", b"II*\x00", b"MM\x00*", b"II+\x00\x08\x00\x00\x00", b"II*\x00\x08\x00\x00\x00")


@dataclass(frozen=True)
class RasterDamage:
    """One damage of one raster file (see the module docstring); ``repr`` reproduces it."""

    kind: str
    payload: bytes = b""
    where: float = 0.0
    flips: tuple[tuple[float, int], ...] = ()
    dtype: str | None = None
    bands: int | None = None
    shape: tuple[int, int] | None = None
    fill: str = "random"
    crs: str = "same"
    nodata: float | None = None
    seed: int = 0

    def apply(self, path: Path) -> None:
        """Damage ``path`` in place."""
        if self.kind == "delete":
            path.unlink()
        elif self.kind == "empty":
            path.write_bytes(b"")
        elif self.kind == "bytes":
            path.write_bytes(self.payload)
        elif self.kind == "truncate":
            data = path.read_bytes()
            path.write_bytes(data[: int(self.where * len(data))])
        elif self.kind == "flip":
            data = bytearray(path.read_bytes())
            for where, value in self.flips:
                data[min(int(where * len(data)), len(data) - 1)] = value
            path.write_bytes(bytes(data))
        elif self.kind == "rewrite":
            self._rewrite(path)
        else:  # pragma: no cover - the strategies make only the kinds above
            raise ValueError(self.kind)

    def _rewrite(self, path: Path) -> None:
        import rasterio

        with rasterio.open(path) as src:
            profile = {k: src.profile.get(k) for k in ("crs", "transform", "count", "height", "width", "dtype")}
        count = self.bands or profile["count"]
        height, width = self.shape or (profile["height"], profile["width"])
        dtype = self.dtype or profile["dtype"]
        crs = {"same": profile["crs"], "none": None}.get(self.crs, self.crs)
        values = make_values(dtype, (count, height, width), self.fill, self.seed)
        options: dict[str, Any] = {"driver": "GTiff", "count": count, "height": height, "width": width}
        options |= {"dtype": dtype, "transform": profile["transform"]}
        if crs is not None:
            options["crs"] = crs
        if self.nodata is not None and _fits(self.nodata, dtype):
            options["nodata"] = self.nodata
        path.unlink()
        with rasterio.open(path, "w", **options) as dst:
            dst.write(values)


def _fits(value: float, dtype: str) -> bool:
    kind = np.dtype(dtype)
    if np.issubdtype(kind, np.integer):
        info = np.iinfo(kind)
        return float(value).is_integer() and info.min <= value <= info.max
    return not np.issubdtype(kind, np.complexfloating)


def make_values(dtype: str, shape: tuple[int, int, int], fill: str, seed: int) -> np.ndarray:
    """Pixels of ``dtype``: ``fill`` one of :data:`FILLS` (NaN/inf fills give 0 in integer dtypes)."""
    rng = np.random.default_rng(seed)
    kind = np.dtype(dtype)
    integer = np.issubdtype(kind, np.integer)
    if integer:
        info = np.iinfo(kind)
        low, high = int(info.min), int(info.max)
    else:
        low, high = -3e38 if kind != np.float64 else -1e300, 3e38 if kind != np.float64 else 1e300
    if fill == "random":
        values = rng.integers(low, high, shape, endpoint=True, dtype=kind) if integer else rng.normal(0, 1e4, shape)
    elif fill == "typical":
        values = rng.integers(max(low, 0), min(high, 3000), shape, endpoint=True)
    elif fill == "small":
        values = rng.integers(max(low, 0), 10, shape, endpoint=True)
    elif fill in ("max", "huge"):
        values = np.full(shape, high)
    elif fill == "min":
        values = np.full(shape, low)
    elif fill in ("nan", "inf", "-inf"):
        values = np.zeros(shape) if integer else np.full(shape, float(fill))
    elif fill == "some-nan":
        values = rng.integers(0, 3000, shape).astype(float)
        if not integer:
            values[..., :1, :1] = np.nan
            values[..., -1:, -1:] = np.inf
    else:
        values = np.zeros(shape)
    if np.issubdtype(kind, np.complexfloating):
        return (np.asarray(values, np.float64) + 1j).astype(kind)
    return np.asarray(values).astype(kind)


def raster_damages() -> st.SearchStrategy[RasterDamage]:
    """Every kind of :class:`RasterDamage`, with its random parts."""
    unit = st.floats(0, 1, allow_nan=False)
    blobs = st.builds(lambda sig, rest: sig + rest, st.sampled_from(TIFF_SIGNATURES), st.binary(max_size=600))
    rewrites = st.builds(
        RasterDamage,
        kind=st.just("rewrite"),
        dtype=st.none() | st.sampled_from(DTYPES),
        bands=st.none() | st.integers(1, 14),
        shape=st.none() | st.tuples(st.integers(1, 20), st.integers(1, 20)),
        fill=st.sampled_from(FILLS),
        crs=st.sampled_from(("same", "same", "none", "EPSG:4326", "EPSG:3857")),
        nodata=st.none() | st.sampled_from((0.0, -9999.0, 65535.0, float("nan"), 1.0)),
        seed=st.integers(0, 2**16),
    )
    return st.one_of(
        rewrites,
        st.builds(RasterDamage, kind=st.just("bytes"), payload=blobs),
        st.builds(RasterDamage, kind=st.just("truncate"), where=unit),
        st.builds(
            RasterDamage,
            kind=st.just("flip"),
            flips=st.lists(st.tuples(unit, st.integers(0, 255)), min_size=1, max_size=12).map(tuple),
        ),
        st.sampled_from((RasterDamage("empty"), RasterDamage("delete"))),
    )
