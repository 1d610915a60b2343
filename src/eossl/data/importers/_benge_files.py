"""Reading ben-ge's files (layout: :mod:`eossl.data.importers.benge`): its CSV tables, the per-modality
folders of either release (GeoTIFF band files or ``.npy``), and the rasters' shapes and dtypes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from eossl.data.importers.raster import open_raster, read_band_files, read_raster
from eossl.errors import ImportDataError

S2_FILE_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
FOLDERS = {
    "s2": ("sentinel-2", "sentinel_2", "s2"),
    "s1": ("sentinel-1", "sentinel_1", "s1"),
    "dem": ("dem", "glo-30", "glo_30", "glo-30_dem", "glo30", "copernicus-dem"),
    "worldcover": ("esaworldcover", "esa_worldcover", "worldcover"),
}


def _name(column: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", column.strip().lower()).strip("_")


def _csv(source: Path, name: str, required: bool = False) -> pd.DataFrame | None:
    """The CSV ``name`` at the root or one folder down; errors name the file."""
    for path in [source / name, *sorted(source.glob(f"*/{name}"))]:
        if path.is_file():
            try:
                table = pd.read_csv(path)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
                raise ImportDataError(f"'{path}': not a readable CSV table ({exc})") from None
            table = table.loc[:, [c for c in table.columns if not str(c).startswith("Unnamed")]]
            if "patch_id" not in table.columns:
                raise ImportDataError(f"'{path}': no patch_id column (found {', '.join(map(str, table.columns))})")
            twice = table["patch_id"][table["patch_id"].duplicated()]
            if len(twice):
                raise ImportDataError(f"'{path}': patch_id {twice.iloc[0]!r} appears more than once")
            table.attrs["path"] = path
            return table
    if required:
        raise ImportDataError(f"'{source}': no {name}")
    return None


def _meta(source: Path) -> tuple[str, pd.DataFrame]:
    found = sorted(source.glob("*_meta.csv"))
    if len(found) != 1:
        raise ImportDataError(
            f"'{source}': expected one ben-ge meta table <name>_meta.csv (e.g. ben-ge-800_meta.csv), found "
            f"{[p.name for p in found] or 'none'}"
        )
    name = found[0].name[: -len("_meta.csv")]
    return name, _csv(source, found[0].name, required=True)


def _roots(source: Path, kind: str) -> list[list[Path]]:
    """Candidate folders of ``kind``: the top-level ones, then release sub-folders such as ``s2_npy``."""
    tops = [p for p in sorted(source.iterdir()) if p.is_dir() and p.name.lower() in FOLDERS[kind]]
    subs = [d for top in tops for d in top.iterdir() if not d.name.startswith(("S1", "S2")) and d.is_dir()]
    return [tops, sorted(subs)[:20]] if tops else []


def _paths(kind: str, root: Path, form: str, ident: str) -> list[Path]:
    """The files of one patch for one kind (``form``: ``tif`` or ``npy``; S2/S1 ``tif`` are band files)."""
    if kind in ("s2", "s1"):
        if form == "npy":
            return [root / f"{ident}_all_bands.npy"]
        bands = S2_FILE_BANDS if kind == "s2" else ("VV", "VH")
        return [root / ident / f"{ident}_{band}.tif" for band in bands]
    suffix = "dem" if kind == "dem" else "esaworldcover"
    return [root / f"{ident}_{suffix}.{form}"]


def _locate(kind: str, roots: list[list[Path]], idents: list[str]) -> tuple[Path, str] | None:
    """Root and form of ``kind``'s files, from the first patches found (the rest are checked on read)."""
    for level in roots:
        for ident in idents[:50]:
            for root in level:
                for form in ("tif", "npy"):
                    if _paths(kind, root, form, ident)[0].is_file():
                        return root, form
    if roots:
        example = _paths(kind, roots[0][0], "tif", idents[0])[0]
        raise ImportDataError(f"'{roots[0][0]}': found no {kind} file of the first patches (expected e.g. '{example}')")
    return None


def _split_files(source: Path, name: str) -> dict[str, str]:
    split: dict[str, str] = {}
    for part, labels in (("train", ("train",)), ("val", ("val", "validation")), ("test", ("test",))):
        for folder in (source / "splits", source, source / "data" / "splits"):
            for label in labels:
                for path in (folder / f"{name}_{label}.csv", folder / f"{label}.csv", folder / f"{label}.txt"):
                    if path.is_file():
                        lines = [x.strip() for x in path.read_text().split() if x.strip() and x.strip() != "patch_id"]
                        split.update(dict.fromkeys(lines, part))
    return split


def _as(values: np.ndarray, dtype: str, path: Path) -> np.ndarray:
    """``values`` in ``dtype``, refusing a cast that would change them."""
    if values.dtype == dtype:
        return values
    target = np.dtype(dtype)
    if np.issubdtype(target, np.floating) and np.issubdtype(values.dtype, np.number):
        return values.astype(target)
    if np.issubdtype(values.dtype, np.number) and np.isfinite(values).all():
        info = np.iinfo(target)
        if (values == np.round(values)).all() and values.min() >= info.min and values.max() <= info.max:
            return values.astype(target)
    raise ImportDataError(f"'{path}': values of {values.dtype} do not fit {dtype} (as the first file)")


def _load(paths: list[Path], bands: int) -> np.ndarray:
    """``[bands, H, W]`` from band GeoTIFFs (resampled to the finest) or one ``.npy`` file."""
    if paths[0].suffix == ".npy":
        path = paths[0]
        try:
            values = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise ImportDataError(f"'{path}': not a readable .npy array ({exc})") from None
        values = values[None] if values.ndim == 2 else values
        if values.ndim != 3 or values.shape[0] != bands:
            raise ImportDataError(f"'{path}': shape {values.shape}, expected [{bands}, H, W]")
        return values
    values = read_band_files(paths) if len(paths) > 1 else read_raster(paths[0])
    if values.shape[0] != bands:
        raise ImportDataError(f"'{paths[0]}': {values.shape[0]} bands, expected {bands}")
    return values


def _shape(paths: list[Path]) -> tuple[int, int]:
    """``(H, W)`` of a patch (the finest band's) without reading pixels."""
    if paths[0].suffix == ".npy":
        return tuple(np.load(paths[0], mmap_mode="r", allow_pickle=False).shape[-2:])  # type: ignore[return-value]
    shapes = []
    for path in paths:
        with open_raster(path) as src:
            shapes.append((src.height, src.width))
    return max(shapes)


def _dtype(paths: list[Path]) -> tuple[str, float | None]:
    """dtype and declared nodata (GeoTIFF only) of a patch's file, without reading pixels."""
    if paths[0].suffix == ".npy":
        return str(np.load(paths[0], mmap_mode="r", allow_pickle=False).dtype), None
    with open_raster(paths[0]) as src:
        return src.dtypes[0], src.nodata
