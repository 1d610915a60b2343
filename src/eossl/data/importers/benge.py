"""ben-ge (Mommert et al. 2023, "ben-ge: Extending BigEarthNet with Geographical and Environmental Data"):
BigEarthNet Sentinel-2 L2A / Sentinel-1 patches (120 x 120 px at 10 m) with Copernicus GLO-30 elevation,
ESA WorldCover land cover, ERA-5 weather, Köppen-Geiger climate zones and a seasonal encoding.

Layout (checked against the ben-ge README and the dataset authors' ben-ge-800 tutorials; ``<name>`` is
``ben-ge``, ``ben-ge-8k``, ``ben-ge-800``, ...)::

    SOURCE/<name>_meta.csv            patch_id, patch_id_s1, timestamp_s2, timestamp_s1, season_s2, season_s1,
                                      lon, lat (and climatezone in the smaller releases)
    SOURCE/<name>_esaworldcover.csv   patch_id, tree_cover .. moss_and_lichen: class fractions of the patch
    SOURCE/<name>_era-5.csv           patch_id, atmpressure_level, temperature_s2, wind-u_s2, relhumidity_s2, ...
    SOURCE/<name>_climatezones.csv    patch_id, climatezone (Beck et al. 2018 legend, 0 = none: open water)
    SOURCE/sentinel-2/<patch_id>/<patch_id>_B01.tif .. _B12.tif     BigEarthNet band files (10/20/60 m)
    SOURCE/sentinel-1/<patch_id_s1>/<patch_id_s1>_VV.tif, _VH.tif    BigEarthNet-S1 backscatter (dB)
    SOURCE/esaworldcover/<patch_id>_esaworldcover.tif                 WorldCover codes 10..100, 0 = no data
    SOURCE/dem/<patch_id>_dem.tif                                     elevation (m), 16-bit integers
    SOURCE/splits/<name>_train.csv, _val.csv, _test.csv               (ben-ge-8k) one patch_id per line

Also read: the ``.npy`` release (``sentinel-2/<patch_id>_all_bands.npy`` [12, H, W] in the s2-l2a band order,
``sentinel-1/<patch_id_s1>_all_bands.npy`` [VV, VH], ``<patch_id>_dem.npy``, ``<patch_id>_esaworldcover.npy``,
possibly one folder deeper, e.g. ``sentinel-2/s2_npy/``) and the CSVs one folder deeper (``era-5/``). Not
verified against a real download: the DEM folder's name (any top-level folder named like ``dem`` or
``glo-30`` is used) and the npy band order (assumed to be BigEarthNet's, as the s2-l2a preset).

The store holds ``s2`` (s2-l2a, 20/60 m bands resampled bilinearly to 10 m; BigEarthNet's 2017-2018
products predate baseline 04.00: offset 0), ``s1`` (s1-grd, dB) and ``dem`` where present; targets
``worldcover`` (segmentation, the 11 WorldCover classes as 0..10, ignore 255 for no data),
``worldcover_multilabel`` (classes whose fraction is at least ``worldcover_threshold``),
``worldcover_majority`` (the largest fraction) and ``climate_zone`` (single-label, the Köppen-Geiger code:
0 "none" and the 30 classes of Beck et al.); the fractions themselves as the extra array
``worldcover_fractions``. Table: ``location_id`` (the patch id), ``lat``, ``lon``, ``time`` (S2 date),
``season`` (DJF/MAM/JJA/SON of the S2 date, for the metadata modality), ben-ge's own ``season_s2`` /
``season_s1`` (0 winter .. 1 summer solstice) and the ERA-5 columns as numbers. The split files, where
present, are the official split; otherwise there is none (split by place).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from eossl.data.importers._base import IMPORTERS, Filtered, Importer, ImporterOptions, ImportItem, ImportPlan, Sample
from eossl.data.importers._benge_files import (
    S2_FILE_BANDS,
    _as,
    _csv,
    _dtype,
    _load,
    _locate,
    _meta,
    _name,
    _paths,
    _roots,
    _shape,
    _split_files,
)
from eossl.data.modality import Modality
from eossl.data.sensors import sensor_modality
from eossl.data.targets import Target
from eossl.errors import ImportDataError

WORLDCOVER_CODES = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100)
WORLDCOVER_CLASSES = ("tree_cover", "shrubland", "grassland", "cropland", "built_up", "bare_sparse_vegetation",
                      "snow_and_ice", "permanent_water_bodies", "herbaceous_wetland", "mangroves",
                      "moss_and_lichen")  # fmt: skip
CLIMATE_ZONES = ("none", "Af", "Am", "Aw", "BWh", "BWk", "BSh", "BSk", "Csa", "Csb", "Csc", "Cwa", "Cwb", "Cwc",
                 "Cfa", "Cfb", "Cfc", "Dsa", "Dsb", "Dsc", "Dsd", "Dwa", "Dwb", "Dwc", "Dwd", "Dfa", "Dfb", "Dfc",
                 "Dfd", "ET", "EF")  # fmt: skip
IGNORE = 255
SEASONS = {12: "DJF", 1: "DJF", 2: "DJF", 3: "MAM", 4: "MAM", 5: "MAM", 6: "JJA", 7: "JJA", 8: "JJA"}
KEYS = ("patch_id", "patch_id_s1", "filename")


class BenGeOptions(ImporterOptions):
    """Which modalities to import, the multi-label threshold, and whether to use the split files."""

    modalities: list[Literal["s2", "s1", "dem"]] | None = Field(
        None, description="modalities to import (default: every one whose folder is present; s2 always)"
    )
    worldcover_threshold: float = Field(
        0.05, ge=0, le=1, description="a WorldCover class is in worldcover_multilabel from this fraction on"
    )
    split: Literal["auto", "none"] = Field("auto", description="auto: the official split from the split files")


def _fractions(source: Path, name: str) -> tuple[dict[str, list[float]], Path] | None:
    """Patch id -> the 11 WorldCover class fractions (0..1) from ``<name>_esaworldcover.csv``, and its path."""
    table = _csv(source, f"{name}_esaworldcover.csv")
    if table is None:
        return None
    columns = {_name(c): c for c in table.columns}
    missing = [c for c in WORLDCOVER_CLASSES if c not in columns]
    if missing:
        raise ImportDataError(f"'{table.attrs['path']}': no class fraction columns {missing}")
    values = table[[columns[c] for c in WORLDCOVER_CLASSES]].to_numpy(np.float64)
    if np.nanmax(values) > 1.0 + 1e-6:  # percentages
        values = values / 100.0
    return dict(zip(table["patch_id"].astype(str), values.tolist(), strict=True)), table.attrs["path"]


def _season(date: pd.Timestamp) -> str:
    return SEASONS.get(date.month, "SON")


@IMPORTERS.register("ben-ge")
class BenGe(Importer):
    """ben-ge -> ``s2``, ``s1``, ``dem`` with WorldCover, climate-zone targets and ERA-5 / season columns."""

    config = BenGeOptions

    def plan(self, source: Path, options: BenGeOptions) -> ImportPlan:
        if not source.is_dir():
            raise ImportDataError(f"'{source}': expected the ben-ge folder (with <name>_meta.csv)")
        name, meta = _meta(source)
        meta["patch_id"] = meta["patch_id"].astype(str)
        ids = {"s2": list(meta["patch_id"])}
        ids["dem"] = ids["worldcover"] = ids["s2"]
        if "patch_id_s1" in meta.columns:
            ids["s1"] = [str(x) for x in meta["patch_id_s1"]]
        notes: list[str] = []
        wanted = ["s2", *[k for k in ("s1", "dem") if k in (options.modalities or ("s1", "dem"))], "worldcover"]
        where = {k: _locate(k, _roots(source, k), ids[k]) if k in ids else None for k in wanted}
        missing = [k for k in (options.modalities or ()) if where.get(k) is None]
        if where["s2"] is None or missing:
            what = "Sentinel-2 (sentinel-2/<patch_id>/ or <patch_id>_all_bands.npy)" if where["s2"] is None else missing
            raise ImportDataError(f"'{source}': found no {what} files (for S1: and a patch_id_s1 column)")
        kinds = [k for k in ("s2", "s1", "dem") if where.get(k) is not None]
        modalities = self._modalities(kinds, where, ids, notes)
        table = self._table(source, name, meta, notes)
        fractions = _fractions(source, name)
        has_map = where["worldcover"] is not None
        has_fractions = fractions is not None or has_map
        if has_map and fractions is None:
            notes.append("no WorldCover fraction table: fractions computed from the maps")
        split = _split_files(source, name) if options.split == "auto" else {}
        if split:
            unlisted = sum(ident not in split for ident in ids["s2"])
            notes.append(f"official split from the split files; {unlisted} patches not listed there left out")
        located = {k: v for k, v in where.items() if v is not None}
        common = {"where": {k: (str(root), form) for k, (root, form) in located.items()}, "map": has_map,
                  "has_fractions": has_fractions, "dtypes": {k: m.dtype for k, m in modalities.items()}}  # fmt: skip
        items = []
        for i, ident in enumerate(ids["s2"]):
            if split and ident not in split:
                continue
            names = {k: ids[k][i] for k in located}
            row = {**table[i], **({"split": split[ident]} if split else {})}
            frac = None
            if fractions is not None:
                if ident not in fractions[0]:
                    raise ImportDataError(f"'{fractions[1]}': no row for patch '{ident}'")
                frac = fractions[0][ident]
            info = {"ids": names, "row": row, "fractions": frac, "common": common}
            files = tuple(_paths(k, *located[k], names[k])[0] for k in located)  # one file of each kind
            items.append(ImportItem(ident, files, info))
        first = next((i for i in ids["s2"][:50] if _paths("s2", *where["s2"], i)[0].is_file()), ids["s2"][0])
        size = _shape(_paths("s2", *where["s2"], first))
        targets, extra = self._targets(has_map, has_fractions, "climate_zone" in table[0], size)
        return ImportPlan(
            modalities=modalities, items=items, extra_arrays=extra, targets=targets,
            split="split" if split else None, attrs={"release": name}, notes=notes,
        )  # fmt: skip

    def _modalities(
        self, kinds: list[str], where: dict[str, Any], ids: dict[str, list[str]], notes: list[str]
    ) -> dict[str, Modality]:
        """The modalities of the kinds found (the DEM in its files' dtype)."""
        first = {k: _paths(k, *where[k], ids[k][0]) for k in kinds}
        out = {"s2": sensor_modality("s2-l2a")}
        notes.append("Sentinel-2 L2A from BigEarthNet (2017-2018, before baseline 04.00): offset 0")
        if "s1" in kinds:
            out["s1"] = sensor_modality("s1-grd")
        if "dem" in kinds:
            dtype, nodata = _dtype(first["dem"])
            out["dem"] = Modality("dem", "elevation", ("elevation",), dtype, (10.0,), nodata=nodata, units="m",
                                  product="Copernicus DEM GLO-30 on the 10 m patch grid")  # fmt: skip
        notes.append(f"modalities: {', '.join(out)} ({', '.join(f'{k}: {where[k][1]}' for k in kinds)})")
        return out

    def _table(self, source: Path, name: str, meta: pd.DataFrame, notes: list[str]) -> list[dict[str, Any]]:
        """One metadata row per patch: place, date, seasons, ERA-5 values, climate zone."""
        era = _csv(source, f"{name}_era-5.csv")
        zones = _csv(source, f"{name}_climatezones.csv")
        merged = meta.copy()
        for extra in (era, zones):
            if extra is not None:
                extra = extra.assign(patch_id=extra["patch_id"].astype(str))
                new = [c for c in extra.columns if c not in merged.columns and c not in KEYS]
                merged = merged.merge(extra[["patch_id", *new]], on="patch_id", how="left")
        stamp = pd.to_datetime(merged.get("timestamp_s2"), errors="coerce") if "timestamp_s2" in merged else None
        from_id = pd.to_datetime(merged["patch_id"].str.extract(r"_(\d{8})T")[0], format="%Y%m%d", errors="coerce")
        dates = from_id if stamp is None else stamp.fillna(from_id)
        numeric = [c for c in merged.columns if c not in KEYS and pd.api.types.is_numeric_dtype(merged[c])]
        numeric = [c for c in numeric if c not in ("lat", "lon", "climatezone")]
        if era is not None:
            notes.append(f"ERA-5 columns from {name}_era-5.csv")
        rows = []
        dates = list(dates)
        for i, rec in enumerate(merged.to_dict("records")):
            row: dict[str, Any] = {"location_id": rec["patch_id"]}
            for key in ("lat", "lon"):
                row[key] = float(rec[key]) if key in merged else float("nan")
            if pd.notna(dates[i]):
                row["time"], row["season"] = dates[i].strftime("%Y-%m-%d"), _season(dates[i])
            else:
                raise ImportDataError(f"'{source / f'{name}_meta.csv'}': no date for patch '{rec['patch_id']}'")
            if "patch_id_s1" in merged:
                row["patch_id_s1"] = str(rec["patch_id_s1"])
            row.update({c: float(rec[c]) for c in numeric})
            if "climatezone" in merged:
                zone = rec["climatezone"]
                if pd.isna(zone) or zone != int(zone) or not 0 <= zone < len(CLIMATE_ZONES):
                    where = (
                        zones.attrs["path"] if zones is not None and "climatezone" not in meta else f"{name}_meta.csv"
                    )
                    raise ImportDataError(f"'{where}': patch '{rec['patch_id']}': climatezone {zone!r}, expected 0..30")
                row["climate_zone"] = int(zone)
            rows.append(row)
        return rows

    def _targets(
        self, has_map: bool, has_fractions: bool, has_zone: bool, size: tuple[int, int]
    ) -> tuple[list[Target], dict[str, tuple[tuple[int, ...], str]]]:
        """The WorldCover and climate-zone targets and the extra arrays they need."""
        targets, extra, classes = [], {}, len(WORLDCOVER_CLASSES)
        if has_map:
            targets.append(Target("worldcover", "segmentation", array="worldcover", class_names=WORLDCOVER_CLASSES,
                                  ignore_index=IGNORE, strata="worldcover_multilabel"))  # fmt: skip
            extra["worldcover"] = ((1, *size), "uint8")
        if has_fractions:
            targets += [
                Target("worldcover_multilabel", "multi-label", array="worldcover_multilabel",
                       class_names=WORLDCOVER_CLASSES),
                Target("worldcover_majority", "single-label", column="worldcover_majority",
                       class_names=WORLDCOVER_CLASSES),
            ]  # fmt: skip
            extra["worldcover_fractions"] = ((classes,), "float32")
            extra["worldcover_multilabel"] = ((classes,), "uint8")
        if has_zone:
            targets.append(Target("climate_zone", "single-label", column="climate_zone", class_names=CLIMATE_ZONES,
                                  description="Köppen-Geiger (Beck et al. 2018); 0: none (open water)"))  # fmt: skip
        return targets, extra

    def read(self, item: ImportItem, options: BenGeOptions) -> list[Sample | Filtered]:
        common = item.info["common"]
        paths = {k: _paths(k, Path(root), form, item.info["ids"][k]) for k, (root, form) in common["where"].items()}
        row = dict(item.info["row"])
        arrays: dict[str, np.ndarray] = {}
        for kind, bands in (("s2", 12), ("s1", 2), ("dem", 1)):
            if kind in paths:
                arrays[kind] = _as(_load(paths[kind], bands), common["dtypes"][kind], paths[kind][0])
        size = arrays["s2"].shape[1:]
        for kind, values in arrays.items():
            if values.shape[1:] != size:
                raise ImportDataError(f"'{paths[kind][0]}': {values.shape[1:]} px, the Sentinel-2 patch is {size}")
        fractions = item.info["fractions"]
        if common["map"]:
            codes = _load(paths["worldcover"], 1)[0]
            if codes.shape != size:
                raise ImportDataError(f"'{paths['worldcover'][0]}': {codes.shape} px, the Sentinel-2 patch is {size}")
            unknown = sorted(set(np.unique(codes).tolist()) - {0, *WORLDCOVER_CODES})
            if unknown:
                raise ImportDataError(
                    f"'{paths['worldcover'][0]}': WorldCover codes {unknown[:5]} (expected 0, 10..100)"
                )
            lookup = np.full(256, IGNORE, np.uint8)
            lookup[list(WORLDCOVER_CODES)] = np.arange(len(WORLDCOVER_CODES))
            arrays["worldcover"] = lookup[codes.astype(np.int64)][None]
            if fractions is None:
                valid = arrays["worldcover"][arrays["worldcover"] != IGNORE]
                fractions = list(np.bincount(valid, minlength=len(WORLDCOVER_CODES)) / max(valid.size, 1))
        if common["has_fractions"]:
            share = np.asarray(fractions, np.float32)
            if not share.sum() > 0:
                return [Filtered(item.key, "no WorldCover class fraction (all zero or missing)")]
            arrays["worldcover_fractions"] = share
            present = (share >= options.worldcover_threshold) & (share > 0)
            arrays["worldcover_multilabel"] = present.astype(np.uint8)
            row["worldcover_majority"] = int(np.argmax(share))
        return [Sample(item.key, arrays, row)]


__all__ = ["CLIMATE_ZONES", "S2_FILE_BANDS", "WORLDCOVER_CLASSES", "WORLDCOVER_CODES", "BenGe", "BenGeOptions"]
