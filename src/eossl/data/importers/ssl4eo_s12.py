"""SSL4EO-S12 (Wang et al. 2022): unlabelled Sentinel-1/2 patches of 264 x 264 pixels (2.64 km) at
251,079 locations around the globe, four seasonal timestamps each, for self-supervised pretraining.

On-disk layout (the ``s1``, ``s2_l1c``, ``s2_l2a`` archives of ``dataserv.ub.tum.de/m1660427.001``
extracted, as TorchGeo's ``SSL4EOS12`` reads them)::

    SOURCE/s1/<location, 7 digits>/<product id>/VV.tif, VH.tif           float32 backscatter in dB
    SOURCE/s2c/<location>/<product id>/B1.tif ... B12.tif (B8A, B10)      uint16 L1C, 13 bands
    SOURCE/s2a/<location>/<product id>/B1.tif ... B12.tif (B8A, no B10)   uint16 L2A, 12 bands

One single-band GeoTIFF per band at its own resolution (10 m bands 264 x 264, 20 m 132 x 132, 60 m
44 x 44). Product ids carry the acquisition date (``S1A_IW_GRDH_1SDV_20200329T001515_...`` and the
Earth Engine Sentinel-2 ids ``20200323T162931_20200323T163750_T15QXA``); each location has four
products per modality, one per season.

The store holds one row per (location, timestamp): the i-th product of each requested modality sorted
by date (the S1 and S2 products of one season are a few days apart). Modalities: ``s2`` (``s2c``:
preset ``s2-l1c``; ``s2a``: ``s2-l2a``; both requested: ``s2_l1c`` and ``s2_l2a``) and ``s1``
(``s1-grd``, dB as shipped), every band resampled (bilinear) onto ``size`` x ``size`` (264, the real
patch size; ``size: null``: each product's finest band grid). Rows: ``location_id`` (the location
number, an integer), ``time`` (ISO date of the S2 product, else S1), ``season`` (DJF/MAM/JJA/SON:
the calendar months of ``time``, either hemisphere), ``<modality>_product`` and ``<modality>_time``,
``lat``/``lon`` of the patch centre. Dates are declared (``group=location_id``, ``time=time``) for
temporal positives (SeCo-style). No labels and no official split: the store is split by location.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from eossl.data.importers._base import IMPORTERS, Filtered, Importer, ImporterOptions, ImportItem, ImportPlan, Sample
from eossl.data.importers.raster import centre_lonlat, open_raster, read_band_files, read_raster
from eossl.data.modality import Modality
from eossl.data.sensors import S2_L1C_BANDS, sensor_modality, sentinel2_offset
from eossl.data.targets import Dates
from eossl.errors import ImportDataError

Product = Literal["s1", "s2c", "s2a"]
PRODUCTS: tuple[str, ...] = ("s1", "s2c", "s2a")
BANDS: dict[str, tuple[str, ...]] = {
    "s1": ("VV", "VH"),
    "s2c": S2_L1C_BANDS,
    "s2a": tuple(b for b in S2_L1C_BANDS if b != "B10"),
}
PRESETS = {"s1": "s1-grd", "s2c": "s2-l1c", "s2a": "s2-l2a"}
REFERENCE_BAND = {"s1": "VV", "s2c": "B2", "s2a": "B2"}
"""A 10 m band of each product, whose centre gives the row's lat/lon."""
MAX_TIMESTAMPS = 4
"""SSL4EO-S12 has four seasonal timestamps per location; the store reserves as many rows per location."""
STAMP = re.compile(r"(\d{8})T\d{6}")
SEASONS = {12: "DJF", 1: "DJF", 2: "DJF", 3: "MAM", 4: "MAM", 5: "MAM", 6: "JJA", 7: "JJA", 8: "JJA"}


class SSL4EOS12Options(ImporterOptions):
    """Options of the SSL4EO-S12 importer."""

    products: list[Product] | None = Field(
        None,
        min_length=1,
        description="which of s1 (S1 GRD), s2c (S2 L1C), s2a (S2 L2A) to import; default: those present",
    )
    seasons: int = Field(
        1,
        ge=1,
        le=MAX_TIMESTAMPS,
        description="least number of timestamps a location must have to be imported (fewer: filtered)",
    )
    size: int | None = Field(
        264,
        ge=1,
        description="every band is resampled onto size x size pixels (264: the real patch size); "
        "null: onto the finest band grid of each product",
    )


def modality_names(products: list[str]) -> dict[str, str]:
    """Product folder -> store modality name (``s2`` unless both S2 levels are imported)."""
    both = "s2c" in products and "s2a" in products
    names = {"s1": "s1", "s2c": "s2_l1c" if both else "s2", "s2a": "s2_l2a" if both else "s2"}
    return {p: names[p] for p in products}


def product_date(name: str) -> date | None:
    """The acquisition date in a product id (the first ``YYYYMMDDThhmmss``), or None."""
    match = STAMP.search(name)
    if match is None:
        return None
    try:
        return date(int(match[1][:4]), int(match[1][4:6]), int(match[1][6:]))
    except ValueError:
        return None


def season_of(when: date) -> str:
    """The three-month group of the date's month: DJF, MAM, JJA or SON (calendar months, either hemisphere)."""
    return SEASONS.get(when.month, "SON")


def _products(location: Path) -> list[tuple[date, str]]:
    """(date, product id) of the product folders of one location folder, sorted by date."""
    if not location.is_dir():
        raise ImportDataError(f"'{location}': location folder does not exist")
    with os.scandir(location) as entries:
        names = [e.name for e in entries if e.is_dir()]
    dated = []
    for name in names:
        when = product_date(name)
        if when is None:
            raise ImportDataError(f"'{location / name}': no acquisition date (YYYYMMDDThhmmss) in the product id")
        dated.append((when, name))
    return sorted(dated)


@IMPORTERS.register("ssl4eo-s12")
class SSL4EOS12(Importer):
    """SSL4EO-S12 -> a store of S1/S2 (L1C, L2A) patches, four dates per location, with ``Dates`` declared."""

    config = SSL4EOS12Options

    def plan(self, source: Path, options: SSL4EOS12Options) -> ImportPlan:
        present = [p for p in PRODUCTS if (source / p).is_dir()]
        products = list(dict.fromkeys(options.products)) if options.products else present
        missing = [p for p in products if p not in present]
        if not products or missing:
            raise ImportDataError(
                f"'{source}': not an SSL4EO-S12 folder: expected product folders s1/, s2c/, s2a/ with "
                f"<location>/<product id>/<band>.tif; missing {missing or list(PRODUCTS)}"
            )
        locations: set[str] = set()
        for product in products:
            with os.scandir(source / product) as entries:
                locations.update(e.name for e in entries if e.is_dir() and e.name.isdigit())
        items = [
            ImportItem(name, tuple(source / p / name for p in products), {"products": products})
            for name in sorted(locations, key=int)
        ]
        names = modality_names(products)
        modalities = {names[p]: _modality(p, names[p]) for p in products}
        notes = [
            f"products {', '.join(products)} -> modalities {', '.join(f'{p}: {n}' for p, n in names.items())}; "
            "the i-th product of each modality (sorted by date) make row i of a location",
            "Sentinel-2 offset 0: SSL4EO-S12 products are from 2019-2021, before processing baseline 04.00 "
            "(2022-01-25); every product's date is checked (sentinel2_offset on the product id)",
            "every band resampled (bilinear) onto "
            + (f"{options.size} x {options.size} pixels" if options.size else "the finest band grid of its product"),
            f"locations with fewer than {options.seasons} timestamps are filtered",
        ]
        if "s1" in products:
            notes.append("Sentinel-1 backscatter in dB as shipped (float32)")
        return ImportPlan(
            modalities=modalities,
            items=items,
            capacity=MAX_TIMESTAMPS * len(items),
            dates=Dates(group="location_id", time="time"),
            notes=notes,
        )

    def read(self, item: ImportItem, options: SSL4EOS12Options) -> list[Sample | Filtered]:
        products: list[str] = item.info["products"]
        names = modality_names(products)
        listed = {p: _products(folder) for p, folder in zip(products, item.files, strict=True)}
        counts = {p: len(v) for p, v in listed.items()}
        if len(set(counts.values())) > 1:
            shown = ", ".join(f"{n} in '{f}'" for n, f in zip(counts.values(), item.files, strict=True))
            raise ImportDataError(f"location {item.key}: the products do not pair by date order ({shown})")
        count = next(iter(counts.values()))
        if count > MAX_TIMESTAMPS:
            raise ImportDataError(
                f"'{item.files[0]}': {count} products, expected at most {MAX_TIMESTAMPS} (one per season)"
            )
        if count < options.seasons:
            return [Filtered(item.key, f"fewer than {options.seasons} timestamps")]
        primary = next((p for p in products if p != "s1"), "s1")
        lat = lon = float("nan")
        samples: list[Sample | Filtered] = []
        for i in range(count):
            arrays, row = {}, {"location_id": int(item.key)}
            for product, folder in zip(products, item.files, strict=True):
                when, pid = listed[product][i]
                path = folder / pid
                if product != "s1":
                    offset, why = sentinel2_offset(pid, when)
                    if offset:
                        raise ImportDataError(
                            f"'{path}': DN offset {offset:g} ({why}); the store declares offset 0 for SSL4EO-S12"
                        )
                arrays[names[product]] = _read_product(path, product, options.size)
                row[f"{names[product]}_product"] = pid
                row[f"{names[product]}_time"] = when.isoformat()
                if product == primary:
                    row["time"], row["season"] = when.isoformat(), season_of(when)
                    if i == 0:
                        lat, lon = centre_lonlat(path / f"{REFERENCE_BAND[product]}.tif")
            row["lat"], row["lon"] = lat, lon
            samples.append(Sample(f"{item.key}/{listed[primary][i][1]}", arrays, row))
        return samples


def _modality(product: str, name: str) -> Modality:
    return sensor_modality(PRESETS[product], name=name)


def _read_product(folder: Path, product: str, size: int | None) -> np.ndarray:
    """The bands of one product folder -> ``[C, H, W]`` in the stored dtype (uint16 S2, float32 S1)."""
    paths = [folder / f"{band}.tif" for band in BANDS[product]]
    for path in paths:
        if not path.is_file():
            raise ImportDataError(f"'{path}': band file does not exist (expected {', '.join(BANDS[product])})")
    if size is None:
        for path in paths:  # one band's dtype is lost once the bands are concatenated
            with open_raster(path) as src:
                _check_dtype(np.zeros(0, src.dtypes[0]), product, path)
        values = read_band_files(paths)
    else:
        values = np.concatenate([_check_dtype(_one_band(p, size), product, p) for p in paths])
    return _check_dtype(values, product, folder).astype(np.float32 if product == "s1" else np.uint16)


def _check_dtype(values: np.ndarray, product: str, path: Path) -> np.ndarray:
    """``values`` when they fit the product (float dB for S1, uint16-range integers for S2), else an error."""
    if product == "s1":
        if not np.issubdtype(values.dtype, np.floating):
            raise ImportDataError(f"'{path}': expected float backscatter in dB, found dtype {values.dtype}")
        return values
    if values.dtype != np.uint16 and (
        not np.issubdtype(values.dtype, np.integer) or (values.size and (values.min() < 0 or values.max() > 65535))
    ):
        raise ImportDataError(f"'{path}': expected uint16 reflectance x 10000, found dtype {values.dtype}")
    return values


def _one_band(path: Path, size: int) -> np.ndarray:
    values = read_raster(path, out_shape=(size, size))
    if values.shape[0] != 1:
        raise ImportDataError(f"'{path}': expected one band per file, found {values.shape[0]}")
    return values
