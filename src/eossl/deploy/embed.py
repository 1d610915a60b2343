"""``eossl embed``: per-patch embeddings of a region as GeoParquet, and their nearest neighbours.

SOURCE is one GeoTIFF scene (a ``tile`` window slid by ``stride`` over it, full windows only, read one
strip of ``tile`` rows at a time), a folder of GeoTIFFs (each like one scene; footprints in the first
file's CRS) or an eossl store (one row per sample, its footprint in EPSG:4326 from its lat/lon centre).
Bands are matched by name to the encoder's; patches with more nodata than ``max_nodata`` are skipped.
Rows go in row groups of :data:`ROWS_PER_GROUP` into a temporary file beside OUT, renamed over it.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pyproj
import shapely
import torch

from eossl.checkpoints import PretrainedEncoder, load_pretrained_encoders
from eossl.data.modality import Modality
from eossl.data.normalize import normalize_input
from eossl.deploy.export import find_checkpoint
from eossl.errors import ConfigError

ROWS_PER_GROUP = 4096  # embedded patches held in memory before they are written as one row group
TIFF_SUFFIXES = (".tif", ".tiff")
TIME_COLUMNS = ("date", "datetime", "time", "acquired", "season")  # a store's time, where it declares none
NAT = np.datetime64("NaT", "us")


@dataclass
class EmbedRequest:
    """What to embed: the encoder of ``modality`` (None: the first) of ``model`` (an ``eossl export``
    folder, a pretraining run folder or a ``.ckpt``) over ``source`` (a GeoTIFF, a folder of them or a
    store) into GeoParquet ``out``. ``tile``/``stride`` in pixels (default: the training patch size /
    ``tile``; a store's samples are embedded whole); ``bands``: the GeoTIFFs' band names in file order
    where they have no descriptions; ``max_nodata``: the largest share of nodata pixels a kept patch has."""

    model: Path
    source: Path
    out: Path
    modality: str | None = None
    tile: int | None = None
    stride: int | None = None
    batch_size: int = 64
    max_nodata: float = 0.5
    bands: list[str] | None = None
    overwrite: bool = False
    device: str = "auto"


@dataclass
class EmbedSummary:
    """The written file, its number of patches, those skipped for nodata, the embedding dimension, the
    CRS of the footprints and the time taken."""

    out: Path
    patches: int
    skipped_nodata: int
    dimension: int
    crs: str
    seconds: float


@dataclass
class _Patches:
    """Patches ``x`` ``[n, C, t, t]`` in physical units (NaN: nodata) and their columns of the output."""

    x: np.ndarray
    source: np.ndarray
    row: np.ndarray
    col: np.ndarray
    time: np.ndarray
    geometry: np.ndarray
    nodata_share: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.x)

    def take(self, index: Any) -> _Patches:
        return _Patches(*(getattr(self, f.name)[index] for f in fields(self)))

    @staticmethod
    def join(parts: list[_Patches]) -> _Patches:
        return _Patches(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(_Patches)))


def _load_model(model: Path, modality: str | None) -> tuple[PretrainedEncoder, int]:
    """The chosen encoder of ``model`` and the patch size it was trained on."""
    exported = model.is_dir() and (model / "config.json").is_file()
    encoders = load_pretrained_encoders(model if exported else find_checkpoint(model))
    name = modality or next(iter(encoders))
    if name not in encoders:
        raise ConfigError(f"model '{model}' has no encoder for modality '{name}' (it has: {', '.join(encoders)})")
    pre = encoders[name]
    if not pre.bands:
        raise ConfigError(f"model '{model}' does not describe the bands of '{name}': they cannot be matched by name")
    if exported:
        size = json.loads((model / "config.json").read_text(encoding="utf-8"))["eossl"].get("image_size")
    else:
        size = pre.encoder_config.get("img_size")
    return pre, int(size or 32)


def _indexes(found: Sequence[str], wanted: Sequence[str], where: str) -> list[int]:
    """Positions of the ``wanted`` band names in ``found``; :class:`ConfigError` naming the missing ones."""
    missing = [b for b in wanted if b not in found]
    if missing:
        raise ConfigError(f"{where} lacks band(s) {', '.join(missing)} the model needs (it has: {', '.join(found)})")
    return [list(found).index(b) for b in wanted]


def _file_bands(src: Any, path: Path, given: list[str] | None, wanted: list[str], warned: list[bool]) -> list[str]:
    """The band names of raster ``src``: its descriptions, else ``given``, else (as many) the model's."""
    if src.descriptions and all(src.descriptions):
        return list(src.descriptions)
    if given:
        if len(given) != src.count:
            raise ConfigError(f"'{path}' has {src.count} bands; --bands names {len(given)}: {', '.join(given)}")
        return list(given)
    if src.count != len(wanted):
        raise ConfigError(f"'{path}' has {src.count} unnamed bands, the model takes {len(wanted)} "
                          f"({', '.join(wanted)}): name the file's bands with --bands")  # fmt: skip
    if not warned[0]:
        warnings.warn(f"'{path}' has no band descriptions: its bands are taken in file order as {', '.join(wanted)} "
                      "(name them with --bands)", UserWarning, stacklevel=4)  # fmt: skip
        warned[0] = True
    return list(wanted)


def _tiff_time(src: Any) -> np.datetime64:
    """The scene's ``TIFFTAG_DATETIME`` (``YYYY:MM:DD HH:MM:SS``, or what pandas parses), else NaT."""
    tag = src.tags().get("TIFFTAG_DATETIME")
    stamp = pd.to_datetime(tag, format="%Y:%m:%d %H:%M:%S", errors="coerce") if tag else pd.NaT
    stamp = pd.to_datetime(tag, errors="coerce") if tag and pd.isna(stamp) else stamp
    return NAT if pd.isna(stamp) else np.datetime64(stamp.tz_localize(None), "us")


def _scene(path: Path, req: EmbedRequest, pre: PretrainedEncoder, tile: int, stride: int,
           to_crs: pyproj.CRS | None, warned: list[bool]) -> Iterator[_Patches]:  # fmt: skip
    """The full windows of one GeoTIFF, one strip of ``tile`` rows read at a time."""
    from rasterio.windows import Window

    from eossl.data.importers.raster import open_raster

    layout: list[Modality] = [m for m in pre.bands for _ in m.bands]
    wanted = [b for m in pre.bands for b in m.bands]
    with open_raster(path, require_crs=True) as src:
        order = _indexes(_file_bands(src, path, req.bands, wanted, warned), wanted, f"'{path}'")
        nodata = [src.nodatavals[i] for i in order]
        a, b, c, d, e, f = src.transform[:6]
        crs = pyproj.CRS(src.crs)
        project = None if to_crs is None or crs == to_crs else pyproj.Transformer.from_crs(crs, to_crs, always_xy=True)
        stamp, cols = _tiff_time(src), np.arange(0, src.width - tile + 1, stride)
        ring = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]], np.float64) * tile
        for r in range(0, src.height - tile + 1, stride) if len(cols) else ():
            strip = src.read([i + 1 for i in order], window=Window(0, r, src.width, tile))
            x = np.stack([m.to_physical(band) for m, band in zip(layout, strip, strict=True)])
            for k, value in enumerate(nodata):
                if value is not None:
                    x[k][strip[k] == value] = np.nan
            px, py = cols[:, None] + ring[:, 0], r + ring[:, 1] + 0 * cols[:, None]
            gx, gy = a * px + b * py + c, d * px + e * py + f
            gx, gy = project.transform(gx, gy) if project is not None else (gx, gy)
            n = len(cols)
            yield _Patches(np.stack([x[:, :, j : j + tile] for j in cols]), np.full(n, str(path), object),
                           np.full(n, r, np.int64), cols.astype(np.int64), np.full(n, stamp),
                           shapely.polygons(np.stack([gx, gy], -1)))  # fmt: skip


def _utm_squares(lat: np.ndarray, lon: np.ndarray, half: float) -> np.ndarray:
    """Squares of side ``2 * half`` metres in the local UTM zone around each (lat, lon), in EPSG:4326."""
    out = np.full(len(lat), None, object)  # no footprint where lat/lon are missing
    ok = np.isfinite(lat) & np.isfinite(lon)
    epsg = np.where(lat >= 0, 32600, 32700) + np.clip((np.nan_to_num(lon) + 180) // 6 + 1, 1, 60).astype(int)
    dx, dy = np.array([-1, 1, 1, -1, -1]) * half, np.array([-1, -1, 1, 1, -1]) * half
    for code in np.unique(epsg[ok]):
        sel = ok & (epsg == code)
        utm = pyproj.Transformer.from_crs(4326, int(code), always_xy=True)
        cx, cy = utm.transform(lon[sel], lat[sel])
        gx, gy = utm.transform(cx[:, None] + dx, cy[:, None] + dy, direction="INVERSE")
        out[sel] = shapely.polygons(np.stack([gx, gy], -1))
    return out


def _store_times(store: Any) -> tuple[np.ndarray, pa.DataType]:
    """Each row's time from the store's date (or season) column: datetimes where all parse, else text."""
    column = store.dates.time if store.dates is not None and store.dates.time else None
    column = column or next((c for c in TIME_COLUMNS if c in store.table.columns), None)
    if column not in store.table.columns:
        return np.full(len(store), NAT), pa.timestamp("us")
    values = store.table[column]
    if not pd.api.types.is_numeric_dtype(values):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = pd.to_datetime(values, errors="coerce", utc=True)
        if parsed.notna().sum() == values.notna().sum():
            return parsed.dt.tz_localize(None).to_numpy("datetime64[us]"), pa.timestamp("us")
    return np.array([None if pd.isna(v) else str(v) for v in values], object), pa.string()


def _store(path: Path, pre: PretrainedEncoder, batch: int) -> tuple[Iterator[_Patches], int, pa.DataType]:
    """One patch per sample of the store at ``path``, the number of samples and the type of their times."""
    from eossl.data.datamodule import StoreDataset
    from eossl.data.store import SampleStore

    store = SampleStore(path)
    missing = [m for m in pre.modalities if m not in store.modalities]
    if missing:
        have = ", ".join(store.modalities)
        raise ConfigError(f"store '{path}' has no modality {', '.join(missing)} (it has: {have})")
    if not {"lat", "lon"} <= set(store.table.columns):
        raise ConfigError(f"store '{path}' has no lat/lon columns: its samples cannot be placed on the map")
    orders = [_indexes(store.modalities[m.name].bands, m.bands, f"store '{path}' modality '{m.name}'")
              for m in pre.bands]  # fmt: skip
    first = store.modalities[pre.modalities[0]]
    half = int(store.array(first.name).shape[-1]) * min(first.gsd_m) / 2
    lat, lon = (store.table[c].to_numpy(np.float64) for c in ("lat", "lon"))
    times, time_type = _store_times(store)
    data = StoreDataset(store, np.arange(len(store)), list(pre.modalities), [])

    def chunks() -> Iterator[_Patches]:
        for start in range(0, len(store), batch):
            rows = np.arange(start, min(start + batch, len(store)))
            got = data.__getitems__(list(rows))
            x = np.concatenate([got[m.name].numpy()[:, o] for m, o in zip(pre.bands, orders, strict=True)], 1)
            yield _Patches(x, np.full(len(rows), str(path), object), rows, np.full(len(rows), -1), times[rows],
                           _utm_squares(lat[rows], lon[rows], half))  # fmt: skip

    return chunks(), len(store), time_type


def _sources(source: Path, tile: int, stride: int) -> tuple[list[Path], pyproj.CRS | None, int]:
    """The GeoTIFFs of ``source`` (none: a store), their first CRS and their number of windows."""
    from eossl.data.importers.raster import open_raster
    from eossl.data.store_location import ARRAYS_DIR

    if source.is_dir() and (source / ARRAYS_DIR).exists():
        return [], None, 0
    if source.is_file() and source.suffix.lower() in TIFF_SUFFIXES:
        files = [source]
    else:
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in TIFF_SUFFIXES) if source.is_dir() else []
    if not files:
        what = "is neither a GeoTIFF, a folder of GeoTIFFs nor an eossl store" if source.exists() else "does not exist"
        raise ConfigError(f"SOURCE '{source}' {what}")
    crs, total = None, 0
    for path in files:
        with open_raster(path, require_crs=True) as src:
            crs = pyproj.CRS(src.crs) if crs is None else crs
            if pyproj.CRS(src.crs) != crs:
                warnings.warn(f"'{path}' is in {src.crs}: its footprints are reprojected to the first file's CRS "
                              f"{crs.to_string()}", UserWarning, stacklevel=3)  # fmt: skip
            total += max(0, (src.height - tile) // stride + 1) * max(0, (src.width - tile) // stride + 1)
    return files, crs, total


def _batches(chunks: Iterator[_Patches], size: int, max_nodata: float, counts: list[int]) -> Iterator[_Patches]:
    """Batches of ``size`` patches (the last shorter) with at most ``max_nodata`` nodata; ``counts``:
    [patches looked at, patches skipped]."""
    pending: list[_Patches] = []
    for chunk in chunks:
        chunk.nodata_share = np.isnan(chunk.x).any(axis=1).mean(axis=(1, 2), dtype=np.float32)
        keep = chunk.nodata_share <= max_nodata
        counts[0], counts[1] = counts[0] + len(chunk), counts[1] + int((~keep).sum())
        pending.append(chunk.take(keep))
        if sum(map(len, pending)) >= size:
            joined = _Patches.join(pending)
            ends = range(size, len(joined) + 1, size)
            yield from (joined.take(slice(end - size, end)) for end in ends)
            pending = [joined.take(slice(ends[-1], None))]
    if sum(map(len, pending)):
        yield _Patches.join(pending)


def _table(p: _Patches, emb: np.ndarray, time_type: pa.DataType) -> pa.Table:
    """One batch of output rows; the embeddings a list column of float32."""
    offsets = pa.array(np.arange(len(emb) + 1, dtype=np.int32) * emb.shape[1])
    return pa.table({
        "source": pa.array(p.source, pa.string()), "row": pa.array(p.row, pa.int64()),
        "col": pa.array(p.col, pa.int64()), "time": pa.array(p.time, time_type),
        "nodata_share": pa.array(p.nodata_share, pa.float32()),
        "embedding": pa.ListArray.from_arrays(offsets, pa.array(emb.reshape(-1), pa.float32())),
        "geometry": pa.array(shapely.to_wkb(p.geometry), pa.binary()),
    })  # fmt: skip


def _geo_metadata(crs: pyproj.CRS) -> dict[str, str]:
    """The GeoParquet ``geo`` entry of the ``geometry`` column (no bbox: the schema is written first)."""
    column = {"encoding": "WKB", "geometry_types": ["Polygon"], "crs": crs.to_json_dict()}
    return {"geo": json.dumps({"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": column}})}


def embed(request: EmbedRequest, progress: Callable[[int, int], None] | None = None) -> EmbedSummary:
    """Embed every patch of ``request.source`` with the model's encoder into GeoParquet (see the module
    docstring); ``progress(done, total)`` after each batch, counting the patches looked at."""
    from eossl.training import default_device

    started = time.perf_counter()
    out, source = Path(request.out), Path(request.source)
    if out.exists() and not request.overwrite:
        raise ConfigError(f"'{out}' already exists: choose another output or pass --overwrite")
    if request.batch_size < 1 or not 0 <= request.max_nodata <= 1:
        raise ConfigError("batch_size must be at least 1 and max_nodata between 0 and 1")
    pre, trained = _load_model(Path(request.model), request.modality)
    tile = int(request.tile or trained)
    stride = int(request.stride or tile)
    if tile < 1 or stride < 1:
        raise ConfigError(f"tile ({tile}) and stride ({stride}) must be positive pixel counts")
    files, crs, total = _sources(source, tile, stride)
    if files:
        warned, target = [False], crs if len(files) > 1 else None
        chunks = (p for path in files for p in _scene(path, request, pre, tile, stride, target, warned))
        time_type = pa.timestamp("us")
    else:
        (chunks, total, time_type), crs = _store(source, pre, request.batch_size), pyproj.CRS("EPSG:4326")
    device = default_device() if request.device == "auto" else torch.device(request.device)
    encoder, normalizer = pre.encoder.eval().to(device), pre.normalizer.to(device)
    fill, counts, held, written = not getattr(encoder, "handles_missing", False), [0, 0], [], 0
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)  # mkstemp makes it private; the result is an ordinary file
    try:
        empty = _table(_Patches(*[np.zeros(0, object)] * 7), np.zeros((0, 1)), time_type)
        schema = empty.schema.with_metadata(_geo_metadata(crs))
        with pq.ParquetWriter(name, schema) as writer:

            def flush() -> int:  # the held rows as one row group
                table = pa.concat_tables(held).replace_schema_metadata(schema.metadata)
                writer.write_table(table, row_group_size=max(len(table), 1))
                held.clear()
                return len(table)

            for batch in _batches(chunks, request.batch_size, request.max_nodata, counts):
                x = torch.from_numpy(np.ascontiguousarray(batch.x)).to(device)
                with torch.no_grad():
                    features = encoder(normalize_input(normalizer, pre.modality, x, fill_missing=fill))
                held.append(_table(batch, features.float().cpu().numpy(), time_type))
                written += flush() if sum(map(len, held)) >= ROWS_PER_GROUP else 0
                if progress is not None:
                    progress(counts[0], total)
            written += flush() if held else 0
        Path(name).replace(out)
    finally:
        Path(name).unlink(missing_ok=True)
    if progress is not None:
        progress(total, total)
    seconds = time.perf_counter() - started
    return EmbedSummary(out, written, counts[1], int(encoder.num_features), crs.to_string(), seconds)


def nearest(parquet: Path, query: int | Sequence[float], k: int = 5) -> pd.DataFrame:
    """The ``k`` patches of an ``eossl embed`` file most similar (cosine) to its row ``query`` (a position
    in the file) or to an embedding vector, most similar first: a GeoDataFrame of ``source``, ``row``,
    ``col``, ``geometry`` and ``similarity``, indexed by position in the file."""
    import geopandas

    column = pq.read_table(parquet, columns=["embedding"]).column("embedding").combine_chunks()
    emb = np.asarray(column.flatten(), np.float32).reshape(len(column), -1)
    if isinstance(query, int | np.integer):
        if not 0 <= query < len(emb):
            raise ConfigError(f"'{parquet}' has {len(emb)} patches: row {query} does not exist")
        vector = emb[int(query)]
    else:
        vector = np.asarray(query, np.float32).reshape(-1)
        if vector.shape[0] != emb.shape[1]:
            raise ConfigError(f"the query has {len(vector)} values, the embeddings of '{parquet}' {emb.shape[1]}")
    similarity = emb @ vector / np.maximum(np.linalg.norm(emb, axis=1) * np.linalg.norm(vector), 1e-12)
    top = np.argsort(-similarity, kind="stable")[: max(0, k)]
    found = geopandas.read_parquet(parquet, columns=["source", "row", "col", "geometry"]).iloc[top].copy()
    found["similarity"] = similarity[top]
    return found
