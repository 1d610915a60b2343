"""BigEarthNet v2.0 (reBEN) for the ``bigearthnet`` importer: the items of ``metadata.parquet`` /
``metadata.csv`` and the labels and table row of one patch (see :mod:`eossl.data.importers.bigearthnet`).

Every row of the table must name its patch (``patch_id``, and ``s1_name`` with S1) as a plain folder
name, once; a row that does not is a bad item whose error names the table and the row (raise, or skip
and count), so that a damaged table never sends the import to folders outside the dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eossl.data.importers._base import ImportItem
from eossl.data.importers._bigearthnet_classes import label_vector, v2_labels
from eossl.data.importers._bigearthnet_files import day, tile
from eossl.data.importers._text import read_csv
from eossl.data.importers.raster import centre_lonlat
from eossl.errors import ImportDataError

V2_EXCLUDE = {"seasonal snow": "contains_seasonal_snow", "cloud and shadow": "contains_cloud_or_shadow"}
SPLITS = {"train": "train", "validation": "val", "val": "val", "test": "test"}


def v2_table(source: Path) -> tuple[pd.DataFrame, Path]:
    """The v2 metadata table and the file it was read from (parquet, else csv)."""
    parquet, csv = source / "metadata.parquet", source / "metadata.csv"
    if parquet.is_file():
        try:
            return pd.read_parquet(parquet), parquet
        except ImportError:
            if not csv.is_file():
                raise ImportDataError(f"'{parquet}': needs pyarrow (or give metadata.csv)") from None
        except Exception as exc:  # pyarrow's own errors
            raise ImportDataError(f"'{parquet}': not a readable parquet file ({exc})") from None
    if not csv.is_file():
        raise ImportDataError(f"'{source}': BigEarthNet v2 needs metadata.parquet or metadata.csv")
    return read_csv(csv, "BigEarthNet v2 metadata table"), csv


def _name_problem(value: Any, column: str) -> str | None:
    """Why ``value`` is no patch folder name (None when it is one)."""
    if not isinstance(value, str) or not value.strip():
        return f"column '{column}' holds {value!r}, not a patch name"
    if "/" in value or "\\" in value or value in (".", "..") or value != value.strip() or len(value.encode()) > 255:
        return f"column '{column}' holds {value!r}, not a plain patch folder name"
    return None


def plan_v2(source, s2_root, s1_root, wanted, options, notes) -> tuple[list[ImportItem], list[str]]:
    """The items of a v2 folder (one per kept row) and the name of its split source, if any."""
    if options.classes == 43:
        raise ImportDataError(f"'{source}': BigEarthNet v2 labels use the 19-class nomenclature only (classes=19)")
    table, path = v2_table(source)
    needed = {"patch_id", "labels"} | ({"s1_name"} if "s1" in wanted else set())
    if not needed <= set(table.columns):
        raise ImportDataError(f"'{path}': needs columns {sorted(needed)}, has {list(table.columns)}")
    items, counts, seen = [], dict.fromkeys(V2_EXCLUDE, 0), {}
    for number, row in enumerate(table.to_dict("records"), start=1):
        flagged = [r for r, c in V2_EXCLUDE.items() if str(row.get(c)).strip().lower() in ("true", "1")]
        if options.exclude_snow_cloud and flagged:
            counts[flagged[0]] += 1
            continue
        patch, s1 = row["patch_id"], row.get("s1_name", "")
        problem = _name_problem(patch, "patch_id") or ("s1" in wanted and _name_problem(s1, "s1_name")) or None
        key = str(patch if "s2" in wanted else s1)
        if problem is None and key in seen:
            problem = f"patch '{key}' is listed twice (rows {seen[key]} and {number})"
        if problem is not None:
            items.append(ImportItem(f"row {number}", (path,), {"error": f"'{path}' row {number}: {problem}"}))
            continue
        seen[key] = number
        country = row.get("country")
        info: dict[str, Any] = {"version": "v2", "place": patch, "labels": v2_labels(row["labels"])}
        info |= {"split": SPLITS.get(str(row.get("split", "")).strip().lower()), "country": country}
        info |= {"listed": f"'{path}' row {number}"}
        if not isinstance(country, str):
            info["country"] = None
        files = []
        if "s2" in wanted:  # <tile product>/<patch>: the name less its last two fields
            info["s2"] = str(s2_root / patch.rsplit("_", 2)[0] / patch)
            files.append(Path(info["s2"]) / f"{patch}_B02.tif")
        if "s1" in wanted:  # <S1 product>/<patch>: the name less tile, row and column
            info["s1"] = str(s1_root / s1.rsplit("_", 3)[0] / s1)
            files.append(Path(info["s1"]) / f"{s1}_VV.tif")
        items.append(ImportItem(key, tuple(files), info))
    notes += [f"{n} patches left out: {reason}" for reason, n in counts.items() if n]
    if not items:
        left_out = f" ({sum(counts.values())} left out: snow or cloud)" if any(counts.values()) else ""
        raise ImportDataError(f"'{path}': lists no patch to import{left_out}")
    good = [i for i in items if "error" not in i.info]
    has_split = "split" in table.columns and bool(good) and all(i.info["split"] for i in good)
    for item in good if not has_split else ():
        item.info["split"] = None
    if "split" in table.columns and not has_split:
        notes.append("the metadata split column holds values other than train/validation/test: not used")
    return items, ([f"the split column of {path.name}"] if has_split else [])


def meta_v2(info: dict[str, Any], options: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Labels and table row of a v2 patch from its metadata row; lat/lon from its raster's georeferencing."""
    for name in ("s2", "s1"):
        if name in info and not Path(info[name]).is_dir():
            where = f"the patch of {info['listed']}"
            raise ImportDataError(f"'{info[name]}': no such {name.upper()} patch folder ({where})")
    row: dict[str, Any] = {"location_id": info["place"], "time": day(info["place"]), "tile": tile(info["place"])}
    if "s1" in info:
        row |= {"s1_patch": Path(info["s1"]).name, "s1_time": day(Path(info["s1"]).name)}
    if info["country"] is not None:
        row["country"] = info["country"]
    folder = Path(info["s2"] if "s2" in info else info["s1"])
    row["lat"], row["lon"] = centre_lonlat(folder / f"{folder.name}_{'B02' if 's2' in info else 'VV'}.tif")
    return label_vector(info["labels"], options.classes, f"{info['listed']} (patch '{info['place']}')"), row
