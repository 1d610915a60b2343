"""OSCD, the Onera Satellite Change Detection dataset (Daudt et al. 2018): 24 cities, each seen on two
dates by Sentinel-2 (L1C, 13 bands, 2015-2018), with a binary map of urban change between them.

On-disk layout (the three archives of the dataset, as TorchGeo's ``OSCD`` reads them)::

    SOURCE/Onera Satellite Change Detection dataset - Images/
        train.txt, test.txt, all.txt              cities, comma separated (the official split)
        <city>/imgs_1/<product>_B01.tif ... _B12.tif, _B8A.tif   date 1: one file per band, at 10/20/60 m
        <city>/imgs_2/<product>_B01.tif ...                      date 2 (its own extent and grid)
        <city>/imgs_1_rect/B01.tif ..., imgs_2_rect/...          bands resampled to 10 m and registered
        <city>/dates.txt                          "date_1: 20151211" / "date_2: 20180330"
    SOURCE/Onera Satellite Change Detection dataset - Train Labels/<city>/cm/<city>-cm.tif, cm/cm.png
    SOURCE/Onera Satellite Change Detection dataset - Test Labels/<city>/cm/...

``SOURCE`` may also be the images folder itself (the label folders beside it). The change map is read
from ``<city>-cm.tif`` (1 = no change, 2 = change), else from ``cm.png`` (0 = no change, 255 = change).

What the store holds: the georeferenced ``imgs_1`` / ``imgs_2`` band files (not the ``_rect`` copies).
Each date's bands are resampled onto its finest (10 m) grid; date 2 is then reprojected onto date 1's
grid through the georeferencing (the two rasters may differ in extent; pixels outside the overlap are
0, the declared nodata). The change map is placed on date 1's grid: reprojected when the tif carries a
CRS, else through ``imgs_1_rect``'s georeferencing when that has one and the same size, else taken to
be on date 1's 10 m grid (what ``imgs_1_rect`` is), which its size must then match. Each city is cut
into ``patch_size`` patches: modalities ``s2`` (date 1) and ``s2_after`` (date 2), both the ``s2-l1c``
preset (uint16 DN), the change target ``change`` ([N, 1, H, W] uint8, 0/1, 255 = no label) and the pair
``s2_change``; rows carry the city as ``location_id`` and ``tile``, ``time`` / ``time_after``, the patch
centre's ``lat`` / ``lon`` and the official ``split``. Patches with more than ``max_invalid`` nodata in
either date (outside the overlap) are filtered.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from eossl.data.importers._base import IMPORTERS, Filtered, Importer, ImporterOptions, ImportItem, ImportPlan, Sample
from eossl.data.importers.raster import (
    Patch,
    invalid_share,
    open_raster,
    patch_grid,
    raster_shape,
    read_band_files,
    read_raster,
    reproject_array,
)
from eossl.data.sensors import sensor_modality, sentinel2_offset
from eossl.data.targets import Pair, Target
from eossl.errors import ImportDataError

IMAGES = "Onera Satellite Change Detection dataset - Images"
LABELS = {
    "train": "Onera Satellite Change Detection dataset - Train Labels",
    "test": "Onera Satellite Change Detection dataset - Test Labels",
}
BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
"""Band files in the order of the ``s2-l1c`` preset (B8A after B08)."""
CLASSES = ("no change", "change")
IGNORE = 255
"""Change-map value of patches whose city has no label file (test labels not downloaded)."""
OUTSIDE = "more than max_invalid nodata in a date (outside the two dates' overlap)"


class OSCDOptions(ImporterOptions):
    """How the cities are cut into patches and resampled."""

    patch_size: int = Field(64, ge=8, description="patch side in 10 m pixels")
    stride: int | None = Field(None, ge=1, description="step between patches (default: patch_size, no overlap)")
    max_invalid: float = Field(0.1, ge=0.0, le=1.0, description="largest nodata share of a date in a kept patch")
    cover_edges: bool = Field(False, description="add patches flush with the right and bottom edges of each city")
    resampling: Literal["bilinear", "cubic", "nearest"] = Field(
        "bilinear", description="resampling of 20/60 m bands to 10 m and of date 2 onto date 1's grid"
    )
    cities: list[str] | None = Field(None, description="import only these cities (default: all)")


def _folders(source: Path) -> tuple[Path, Path]:
    """``(images folder, folder holding the label folders)``."""
    for images in (source / IMAGES, source):
        if images.is_dir() and any((images / name).is_file() for name in ("train.txt", "test.txt", "all.txt")):
            return images, images.parent
        if images.is_dir() and any(p.is_dir() and (p / "imgs_1").is_dir() for p in images.iterdir()):
            return images, images.parent
    raise ImportDataError(
        f"'{source}': not an OSCD folder: expected '{IMAGES}/' with train.txt/test.txt and <city>/imgs_1/, "
        "imgs_2/, dates.txt"
    )


def _city_list(path: Path) -> list[str]:
    """Cities of a split file (comma separated, maybe over several lines)."""
    return [c.strip() for c in re.split(r"[,\s]+", path.read_text(encoding="utf-8")) if c.strip()]


def _dates(path: Path) -> tuple[date, date]:
    """``date_1`` and ``date_2`` of a city's ``dates.txt``."""
    if not path.is_file():
        raise ImportDataError(f"'{path}': file does not exist (expected 'date_1: YYYYMMDD' and 'date_2: YYYYMMDD')")
    found = dict(re.findall(r"(date_[12])\s*:\s*(\d{8})", path.read_text(encoding="utf-8")))
    if set(found) != {"date_1", "date_2"}:
        raise ImportDataError(f"'{path}': expected lines 'date_1: YYYYMMDD' and 'date_2: YYYYMMDD', found {found}")
    try:
        return tuple(datetime.strptime(found[k], "%Y%m%d").date() for k in ("date_1", "date_2"))  # type: ignore[return-value]
    except ValueError as exc:
        raise ImportDataError(f"'{path}': not a date ({exc})") from None


def _band_files(folder: Path) -> dict[str, Path]:
    """Band name -> its file in ``imgs_1`` / ``imgs_2`` (``<product>_B01.tif``); every band once."""
    if not folder.is_dir():
        raise ImportDataError(f"'{folder}': folder does not exist (expected one <product>_<band>.tif per band)")
    files: dict[str, Path] = {}
    for path in sorted(folder.glob("*.tif")):
        band = path.stem.rsplit("_", 1)[-1].upper()
        if band in BANDS:
            if band in files:
                raise ImportDataError(f"'{folder}': two files of band {band}: '{files[band].name}', '{path.name}'")
            files[band] = path
    missing = [b for b in BANDS if b not in files]
    if missing:
        raise ImportDataError(
            f"'{folder}': missing band files {', '.join(missing)} (expected <product>_{missing[0]}.tif beside "
            f"{len(files)} other band files)"
        )
    return files


def _product(folder: Path) -> str | None:
    """The product name the band files start with (``S2A_OPER_MSI_L1C_..._T40RCN``), if any."""
    names = sorted(folder.glob("*_B02.tif"))
    return names[0].name[: -len("_B02.tif")] if names else None


def _grid(path: Path) -> tuple[Any, Any, tuple[int, int]]:
    """``(crs, transform, (height, width))`` of a georeferenced raster."""
    with open_raster(path, require_crs=True) as src:
        return src.crs, src.transform, (src.height, src.width)


def _read_date(folder: Path, resampling: str) -> tuple[np.ndarray, tuple[Any, Any, tuple[int, int]]]:
    """One date's 13 bands on its finest grid (uint16 ``[13, H, W]``) and that grid."""
    files = _band_files(folder)
    paths = [files[b] for b in BANDS]
    values = read_band_files(paths, resampling=resampling)
    grid = _grid(files["B02"])  # a 10 m band: the finest grid, the one the bands were resampled to
    if values.shape[1:] != grid[2]:
        raise ImportDataError(
            f"'{files['B02']}': {grid[2][0]}x{grid[2][1]} pixels, but another band of '{folder}' has more "
            f"({values.shape[1]}x{values.shape[2]}); expected B02 at the finest resolution (10 m)"
        )
    if values.dtype != np.uint16:
        ok = np.all(np.isfinite(values)) and values.min() >= 0 and values.max() <= 65535
        if not ok or (np.issubdtype(values.dtype, np.floating) and np.any(values != np.round(values))):
            raise ImportDataError(f"'{folder}': expected Sentinel-2 L1C DN (integers 0..65535), got {values.dtype}")
        values = values.astype(np.uint16)
    return values, grid


def _read_change(path: Path, rect: Path, grid: tuple[Any, Any, tuple[int, int]]) -> np.ndarray:
    """The change map (0/1, :data:`IGNORE` where it does not reach) on date 1's ``grid``, ``[H, W]`` uint8."""
    tif = path.suffix.lower() == ".tif"
    with warnings.catch_warnings():  # the change maps carry no georeferencing: expected, not worth a warning
        warnings.simplefilter("ignore")
        raw = read_raster(path)[0]
        with open_raster(path) as src:
            source = (src.crs, src.transform) if src.crs is not None else None
        if source is None and rect.is_file():
            with open_raster(rect) as src:
                if src.crs is not None and (src.height, src.width) == raw.shape:
                    source = (src.crs, src.transform)
    codes = {1: 0, 2: 1} if tif else {0: 0, 1: 1, 255: 1}
    found = set(np.unique(raw).tolist())
    if not found <= set(codes):
        expected = "1 (no change) and 2 (change)" if tif else "0 (no change) and 255 (change)"
        raise ImportDataError(f"'{path}': expected values {expected}, found {sorted(found)[:10]}")
    change = np.full(raw.shape, IGNORE, dtype=np.uint8)
    for value, label in codes.items():
        change[raw == value] = label
    if source is not None:
        return reproject_array(change[None], source, grid, nodata=IGNORE, resampling="nearest")[0]
    if change.shape != grid[2]:
        raise ImportDataError(
            f"'{path}': change map of {change.shape[0]}x{change.shape[1]} pixels without georeferencing, but "
            f"date 1's 10 m grid (imgs_1) is {grid[2][0]}x{grid[2][1]}; the map must be on that grid"
        )
    return change


def _windows(height: int, width: int, options: OSCDOptions) -> list[Patch]:
    size, stride = options.patch_size, options.stride or options.patch_size
    patches = patch_grid(height, width, size, stride)
    if options.cover_edges and height >= size and width >= size:
        rows = sorted({p.row for p in patches} | {height - size})
        cols = sorted({p.col for p in patches} | {width - size})
        patches = [Patch(r, c, size) for r in rows for c in cols]
    return patches


def _lat_lon(grid: tuple[Any, Any, tuple[int, int]], patches: list[Patch]) -> tuple[list[float], list[float]]:
    """Latitude and longitude of the patch centres on ``grid``."""
    from rasterio.warp import transform as warp_transform

    crs, transform, _ = grid
    xy = [transform @ (p.col + p.size / 2, p.row + p.size / 2) for p in patches]
    lon, lat = warp_transform(crs, "EPSG:4326", [x for x, _ in xy], [y for _, y in xy])
    return list(lat), list(lon)


def _label_file(folder: Path, city: str) -> Path | None:
    for path in (folder / city / "cm" / f"{city}-cm.tif", folder / city / "cm" / "cm.png"):
        if path.is_file():
            return path
    return None


def _plan_city(
    images: Path, root: Path, city: str, split: str | None, options: OSCDOptions
) -> tuple[ImportItem, int, list[tuple[date, float]]]:
    """One city's item (its files, split, dates, label file), its most patches and its dates' DN offsets.

    Problems found here (no ``dates.txt``, unreadable rasters) are left for :meth:`OSCD.read` to raise, so
    that ``on_error=skip`` leaves the city out instead of stopping the import.
    """
    try:
        dates: tuple[date, date] | None = _dates(images / city / "dates.txt")
    except ImportDataError:
        dates = None
    offsets = []
    if dates is not None:
        for key, when in zip(("imgs_1", "imgs_2"), dates, strict=True):
            offsets.append((when, sentinel2_offset(_product(images / city / key), when)[0]))
    label_dirs = {s: root / LABELS[s] for s in ([split] if split else LABELS) if (root / LABELS[s]).is_dir()}
    label = None
    for name, folder in label_dirs.items():
        label = _label_file(folder, city)
        if label is not None:
            split = split or name  # no split files: the labels folder a city is in gives its split
            break
    if label is None and label_dirs:  # the labels were downloaded but this city's map is not there
        label = next(iter(label_dirs.values())) / city / "cm" / f"{city}-cm.tif"
    files = [*sorted((images / city / "imgs_1").glob("*.tif")), *sorted((images / city / "imgs_2").glob("*.tif"))]
    count = 1  # at least an error to report
    b02 = [p for p in files if p.parent.name == "imgs_1" and p.stem.upper().endswith("_B02")]
    if b02:
        try:
            _, height, width = raster_shape(b02[0])
            count = max(len(_windows(height, width, options)), 1)
        except ImportDataError:
            pass
    info = {"city": city, "split": split, "dates": None if dates is None else [d.isoformat() for d in dates]}
    info.update(images=str(images / city), label=None if label is None else str(label))
    return ImportItem(city, (*files, *([label] if label else [])), info), count, offsets


@IMPORTERS.register("oscd")
class OSCD(Importer):
    """OSCD -> patches with ``s2`` / ``s2_after`` (13 L1C bands, aligned dates) and the change map ``change``."""

    config = OSCDOptions

    def plan(self, source: Path, options: OSCDOptions) -> ImportPlan:
        images, root = _folders(source)
        split: dict[str, str] = {}
        for name in ("train", "test"):
            if (images / f"{name}.txt").is_file():
                split.update(dict.fromkeys(_city_list(images / f"{name}.txt"), name))
        cities = list(split) or sorted(p.name for p in images.iterdir() if (p / "imgs_1").is_dir())
        if options.cities is not None:
            unknown = sorted(set(options.cities) - set(cities))
            if unknown:
                raise ImportDataError(f"'{images}': cities {unknown} are not in the dataset (it has {cities})")
            cities = [c for c in cities if c in options.cities]
        notes, items, capacity, values = [], [], 0, set()
        for folder in LABELS.values():
            if not (root / folder).is_dir():
                notes.append(f"'{folder}' not found: its cities have no change map (stored as {IGNORE}, ignored)")
        when: list[date] = []
        for city in cities:
            item, count, offsets = _plan_city(images, root, city, split.get(city), options)
            items.append(item)
            capacity += count
            when += [d for d, _ in offsets]
            values |= {o for _, o in offsets}
        if len(values) > 1:
            raise ImportDataError(
                f"'{images}': the dates span Sentinel-2 processing baselines with different DN offsets "
                f"({sorted(values)}); one store holds one offset per modality"
            )
        offset = values.pop() if values else 0.0
        span = f"{min(when)} .. {max(when)}" if when else "unknown"
        notes.append(
            f"Sentinel-2 L1C DN offset {offset:g}: dates {span} (OSCD: 2015-2018; baseline 04.00 and its -1000 "
            "offset began 2022-01-25), decided per date from the product name, else the date"
        )
        notes.append(
            "bands of each date resampled to its 10 m grid; date 2 reprojected onto date 1's grid "
            f"({options.resampling}); change map on date 1's grid (0 no change, 1 change, {IGNORE} no label)"
        )
        has_train = any(i.info["split"] == "train" for i in items)
        if has_train:
            notes.append("official split from train.txt / test.txt")
        preset = replace(sensor_modality("s2-l1c"), offset=offset)
        return ImportPlan(
            modalities={"s2": preset, "s2_after": replace(preset, name="s2_after")},
            items=items,
            extra_arrays={"change": ((1, options.patch_size, options.patch_size), "uint8")},
            capacity=max(capacity, 1),
            targets=[Target("change", "change", array="change", class_names=CLASSES, ignore_index=IGNORE)],
            pairs=[Pair("s2_change", before="s2", after="s2_after", target="change")],
            split="split" if has_train else None,
            notes=notes,
        )

    def read(self, item: ImportItem, options: OSCDOptions) -> list[Sample | Filtered]:
        city, folder = item.info["city"], Path(item.info["images"])
        before, grid = _read_date(folder / "imgs_1", options.resampling)
        after_raw, grid_after = _read_date(folder / "imgs_2", options.resampling)
        after = reproject_array(after_raw, grid_after[:2], grid, nodata=0, resampling=options.resampling)
        if item.info["label"] is None:
            change = np.full(grid[2], IGNORE, dtype=np.uint8)
        else:
            label = Path(item.info["label"])
            if not label.is_file():
                raise ImportDataError(f"'{label}': file does not exist (nor '{label.parent / 'cm.png'}')")
            change = _read_change(label, folder / "imgs_1_rect" / "B02.tif", grid)
        patches = _windows(*grid[2], options)
        if not patches:
            return [Filtered(item.key, f"city smaller than patch_size {options.patch_size}")]
        lat, lon = _lat_lon(grid, patches)
        d1, d2 = item.info["dates"] or [d.isoformat() for d in _dates(folder / "dates.txt")]
        out: list[Sample | Filtered] = []
        for patch, la, lo in zip(patches, lat, lon, strict=True):
            key = f"{city}_{patch.row:04d}_{patch.col:04d}"
            s2, s2_after = before[(slice(None), *patch.slices)], after[(slice(None), *patch.slices)]
            if max(invalid_share(s2, 0), invalid_share(s2_after, 0)) > options.max_invalid:
                out.append(Filtered(key, OUTSIDE))
                continue
            row = {"location_id": city, "tile": city, "time": d1, "time_after": d2, "lat": la, "lon": lo}
            row.update(patch_row=patch.row, patch_col=patch.col, labelled=item.info["label"] is not None)
            if item.info["split"] is not None:
                row["split"] = item.info["split"]
            arrays = {"s2": s2, "s2_after": s2_after, "change": change[None, patch.slices[0], patch.slices[1]]}
            out.append(Sample(key, arrays, row))
        return out
