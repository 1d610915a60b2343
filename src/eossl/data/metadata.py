"""Patch-global metadata as image planes, and stacking modalities for early/late fusion.

Scalar metadata (season, climate zone, elevation, weather, ...) joins image modalities the way the
ben-ge tutorial does it: each value is "blown up" to a constant plane of the patch size. Columns of
the store's metadata table are encoded by type:

- ``season`` (DJF/MAM/JJA/SON or a month 1-12): two cyclic planes, sin and cos of the season angle;
- text columns (climate zone, ...): one plane per category (one-hot), categories from the whole table;
- numeric columns: one plane standardised with the table's mean and std.

The planes are already standardised, so the normalisation statistics of the ``meta`` modality are
mean 0 and std 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from eossl.data.modality import Modality

METADATA_MODALITY = "meta"
SEASONS = ("DJF", "MAM", "JJA", "SON")
# columns that are (or are derived from) targets, or identify the sample: never inputs
FORBIDDEN_COLUMNS = ("sample_id", "location_id", "label", "tree_cover", "lat", "lon")


from eossl.errors import MetadataError  # noqa: E402  (re-exported)


def _season_angle(values: pd.Series, column: str) -> np.ndarray:
    if not pd.api.types.is_numeric_dtype(values):
        unknown = sorted(set(values) - set(SEASONS))
        if unknown:
            raise MetadataError(f"metadata column '{column}': unknown seasons {unknown[:5]} (expected {SEASONS})")
        return values.map(SEASONS.index).to_numpy(float) * (2 * np.pi / 4)
    months = values.to_numpy(float)
    if np.any((months < 1) | (months > 12)):
        raise MetadataError(f"metadata column '{column}': numeric seasons must be months 1-12")
    return (months - 1) * (2 * np.pi / 12)


def metadata_encoding(table: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """``[N, P]`` encoded values of ``columns`` for every row of ``table``, and the plane names."""
    values, names = [], []
    for column in columns:
        if column in FORBIDDEN_COLUMNS:
            raise MetadataError(f"metadata column '{column}' is an identifier or a target, not an input")
        if column not in table.columns:
            raise MetadataError(f"metadata column '{column}' is not in the store's table (it has: {', '.join(table)})")
        series = table[column]
        if series.isna().any():
            raise MetadataError(f"metadata column '{column}' has {int(series.isna().sum())} empty values")
        if column == "season":
            angle = _season_angle(series, column)
            values += [np.sin(angle), np.cos(angle)]
            names += ["season_sin", "season_cos"]
        elif not pd.api.types.is_numeric_dtype(series):
            for category in sorted(series.unique()):
                values.append((series == category).to_numpy(float))
                names.append(f"{column}={category}")
        else:
            x = series.to_numpy(float)
            values.append((x - x.mean()) / (x.std() or 1.0))
            names.append(column)
    return np.stack(values, axis=1).astype(np.float32), tuple(names)


def metadata_modality(names: tuple[str, ...]) -> Modality:
    """The ``meta`` modality: one constant plane per encoded metadata value."""
    return Modality(name=METADATA_MODALITY, kind="metadata", bands=names, dtype="float32", gsd_m=(0.0,) * len(names))


def constant_planes(values: np.ndarray, size: int) -> np.ndarray:
    """``[N, P]`` values -> ``[N, P, size, size]`` constant planes."""
    return np.broadcast_to(values[:, :, None, None], (*values.shape, size, size)).copy()


def stacked_modality(name: str, parts: list[Modality]) -> Modality:
    """A virtual modality for the channels of ``parts`` stacked in order (early fusion input)."""
    bands = [b for m in parts for b in m.bands]
    if len(set(bands)) != len(bands):  # the same band name in two modalities: prefix every band
        bands = [f"{m.name}:{b}" for m in parts for b in m.bands]
    return Modality(
        name=name, kind="stack", bands=tuple(bands), dtype="float32", gsd_m=tuple(g for m in parts for g in m.gsd_m)
    )
