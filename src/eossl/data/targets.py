"""What a store holds besides its modalities: targets, linked acquisitions (dates) and change pairs.

A store declares these in its attributes (format v2, see :mod:`eossl.data.store`), so that nothing
downstream hard-codes target names: a :class:`Target` says where its values live (a metadata-table
``column`` or an ``array`` of the store) and what they mean (its ``kind``); :class:`Dates` says which
table rows are several acquisitions of one place; a :class:`Pair` names two modalities that are two
dates of one place and the change target between them.

:func:`check_declarations` checks declarations against what a store holds; the writer calls it before
publishing a store (:meth:`eossl.data.store.StoreWriter.close`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, fields
from numbers import Integral
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from eossl.errors import StoreError

TargetKind = Literal["single-label", "multi-label", "segmentation", "regression", "pixel-regression", "change"]
TARGET_KINDS: tuple[str, ...] = get_args(TargetKind)
COLUMN_KINDS: tuple[str, ...] = ("single-label", "regression")
"""Kinds whose values are one number per sample, read from a metadata-table column."""
DENSE_KINDS: tuple[str, ...] = ("segmentation", "pixel-regression", "change")
"""Kinds with one value per pixel (arrays ``[N, 1, H, W]`` or ``[N, H, W]``)."""
CLASSIFICATION_KINDS: tuple[str, ...] = ("single-label", "multi-label", "segmentation", "change")
"""Kinds whose values are class ids (or 0/1 per class)."""
STRATA_KINDS: tuple[str, ...] = ("single-label", "multi-label")
"""Kinds whose classes can stratify label fractions."""


def _from_fields(cls: type, what: str, payload: dict[str, Any], **given: Any) -> Any:
    """Build a declaration dataclass from its JSON dict, refusing keys it does not have."""
    if not isinstance(payload, dict):
        raise StoreError(f"{what}: expected a JSON object, got {type(payload).__name__} {payload!r}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(payload) - known)
    if unknown:
        raise StoreError(f"{what}: unknown keys {unknown} (known: {', '.join(sorted(known - set(given)))})")
    try:
        return cls(**{**payload, **given})
    except TypeError as exc:  # a required field missing
        raise StoreError(f"{what}: {exc}") from None


def _to_json(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of a declaration that differ from their defaults (tuples as lists)."""
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.name in skip or value == f.default:
            continue
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


@dataclass(frozen=True)
class Target:
    """A target a store holds: its name (the batch key), kind and source.

    ``column``: a metadata-table column (``single-label``: integer class ids; ``regression``: floats).
    ``array``: an array of the store (``multi-label``: ``[N, C]`` 0/1; ``segmentation`` and ``change``:
    ``[N, 1, H, W]`` or ``[N, H, W]`` class ids; ``pixel-regression``: ``[N, 1, H, W]`` floats).
    Exactly one of the two is set, the one the kind reads from. ``class_names`` name the classes of
    classification kinds, ``ignore_index`` is the label value meaning "no label" (dense targets), and
    ``strata`` names another (single- or multi-label) target whose classes stratify label fractions
    of this one (``None``: this one).
    """

    name: str
    kind: TargetKind
    column: str | None = None
    array: str | None = None
    class_names: tuple[str, ...] = ()
    ignore_index: int | None = None
    strata: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise StoreError(f"target {self.name!r}: the name must be a non-empty string")
        if self.kind not in TARGET_KINDS:
            raise StoreError(f"target '{self.name}': unknown kind {self.kind!r} (known: {', '.join(TARGET_KINDS)})")
        if (self.column is None) == (self.array is None):
            raise StoreError(
                f"target '{self.name}': set exactly one source, a table column or an array "
                f"(got column={self.column!r}, array={self.array!r})"
            )
        if self.kind in COLUMN_KINDS and self.column is None:
            raise StoreError(
                f"target '{self.name}' of kind '{self.kind}' reads one value per sample from a table column "
                f"(column=...), got array={self.array!r}"
            )
        if self.kind not in COLUMN_KINDS and self.array is None:
            raise StoreError(
                f"target '{self.name}' of kind '{self.kind}' reads its values from an array of the store "
                f"(array=...), got column={self.column!r}"
            )
        if isinstance(self.class_names, str) or not isinstance(self.class_names, (list, tuple)):
            raise StoreError(f"target '{self.name}': class_names must be a list of names, got {self.class_names!r}")
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if self.class_names and self.kind not in CLASSIFICATION_KINDS:
            raise StoreError(f"target '{self.name}' of kind '{self.kind}' has no classes, got class_names")
        if self.ignore_index is not None:
            if isinstance(self.ignore_index, bool) or not isinstance(self.ignore_index, Integral):
                raise StoreError(f"target '{self.name}': ignore_index must be an integer, got {self.ignore_index!r}")
            object.__setattr__(self, "ignore_index", int(self.ignore_index))

    @property
    def dense(self) -> bool:
        """One value per pixel (segmentation, pixel-regression, change)."""
        return self.kind in DENSE_KINDS

    @property
    def classification(self) -> bool:
        """Values are class ids or 0/1 per class (single-label, multi-label, segmentation, change)."""
        return self.kind in CLASSIFICATION_KINDS

    @property
    def num_classes(self) -> int:
        """Number of declared class names (0 when none are declared)."""
        return len(self.class_names)

    @property
    def source(self) -> str:
        """Where the values live, in words: ``column NAME`` or ``array NAME``."""
        return f"column {self.column}" if self.column is not None else f"array {self.array}"

    def to_json(self) -> dict[str, Any]:
        """JSON-able dict of the fields that are set (the name is the key it is stored under)."""
        return _to_json(self, skip=("name",))

    @classmethod
    def from_json(cls, name: str, payload: dict[str, Any]) -> Target:
        """Read a target stored under ``name``; :class:`StoreError` on an unknown kind, key or source."""
        return _from_fields(cls, f"target '{name}'", payload, name=name)


@dataclass(frozen=True)
class Dates:
    """Several acquisitions of one place as linked table rows.

    ``group``: the table column whose equal values are one place (e.g. ``location_id``); ``time``: the
    column with the acquisition time or season, if any.
    """

    group: str
    time: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.group, str) or not self.group:
            raise StoreError(f"dates: 'group' must name a table column, got {self.group!r}")

    def to_json(self) -> dict[str, Any]:
        """JSON-able dict of the fields that are set."""
        return _to_json(self)

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> Dates:
        """Read stored dates; :class:`StoreError` on unknown or missing keys."""
        return _from_fields(cls, "dates", payload)


@dataclass(frozen=True)
class Pair:
    """Two dates of one place with a change target: modalities ``before`` and ``after``, target ``target``."""

    name: str
    before: str
    after: str
    target: str

    def __post_init__(self) -> None:
        for key in ("name", "before", "after", "target"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value:
                raise StoreError(f"pair {self.name!r}: '{key}' must be a non-empty string, got {value!r}")
        if self.before == self.after:
            raise StoreError(f"pair '{self.name}': before and after are the same modality '{self.before}'")

    def to_json(self) -> dict[str, Any]:
        """JSON-able dict of all fields (pairs are stored as a list, so the name is one of them)."""
        return _to_json(self)

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> Pair:
        """Read a stored pair; :class:`StoreError` on unknown or missing keys."""
        name = payload.get("name", "?") if isinstance(payload, dict) else "?"
        return _from_fields(cls, f"pair '{name}'", payload)


RESERVED_BATCH_KEYS = ("index",)
"""Batch keys the data module uses itself, so no target may be named like them."""


def as_target_dict(targets: dict[str, Target] | list[Target] | None, store: str = "") -> dict[str, Target]:
    """Targets keyed by name, from a dict (keys must be the names) or a list (names must be unique)."""
    where = f"store '{store}': " if store else ""
    if targets is None:
        return {}
    items = list(targets.items()) if isinstance(targets, dict) else [(t.name, t) for t in targets]
    out: dict[str, Target] = {}
    for key, target in items:
        if not isinstance(target, Target):
            raise StoreError(f"{where}targets: expected Target declarations, got {type(target).__name__} {target!r}")
        if key != target.name:
            raise StoreError(f"{where}target '{target.name}' is declared under the key '{key}'; use its name")
        if key in out:
            raise StoreError(f"{where}target '{key}' is declared twice")
        out[key] = target
    return out


def as_pair_dict(pairs: list[Pair] | dict[str, Pair] | None, store: str = "") -> dict[str, Pair]:
    """Pairs keyed by name (names must be unique)."""
    where = f"store '{store}': " if store else ""
    out: dict[str, Pair] = {}
    for pair in (pairs.values() if isinstance(pairs, dict) else pairs) or []:
        if not isinstance(pair, Pair):
            raise StoreError(f"{where}pairs: expected Pair declarations, got {type(pair).__name__} {pair!r}")
        if pair.name in out:
            raise StoreError(f"{where}pair '{pair.name}' is declared twice")
        out[pair.name] = pair
    return out


def _check_column(where: str, target: Target, table: pd.DataFrame) -> None:
    column = target.column
    if column not in table.columns:
        raise StoreError(
            f"{where}target '{target.name}' reads column '{column}', which the metadata table does not have "
            f"(it has: {', '.join(map(str, table.columns))})"
        )
    values = table[column]
    if target.kind == "single-label":
        if not pd.api.types.is_integer_dtype(values) or pd.api.types.is_bool_dtype(values):
            raise StoreError(
                f"{where}target '{target.name}' (single-label) expects integer class ids in column '{column}', "
                f"got dtype {values.dtype}"
            )
        ids = values.to_numpy()
        if target.ignore_index is not None:
            ids = ids[ids != target.ignore_index]
        if len(ids) and (ids.min() < 0 or (target.class_names and ids.max() >= target.num_classes)):
            raise StoreError(
                f"{where}target '{target.name}' (single-label) expects class ids in [0, {target.num_classes or 'C'}) "
                f"in column '{column}', got values {ids.min()} .. {ids.max()}"
            )
    elif not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise StoreError(
            f"{where}target '{target.name}' ({target.kind}) expects numbers in column '{column}', "
            f"got dtype {values.dtype}"
        )


def _check_array(
    where: str, target: Target, arrays: dict[str, tuple[tuple[int, ...], str]], sizes: set[tuple[int, int]]
) -> None:
    name = target.array
    if name not in arrays:
        raise StoreError(
            f"{where}target '{target.name}' reads array '{name}', which the store does not have "
            f"(it has: {', '.join(sorted(arrays)) or 'none'})"
        )
    shape, dtype = arrays[name]
    shown = f"[N, {', '.join(map(str, shape))}]"
    if target.kind == "multi-label":
        classes = target.num_classes or "C"
        if len(shape) != 1 or (target.class_names and shape[0] != target.num_classes):
            raise StoreError(
                f"{where}target '{target.name}' (multi-label) expects array '{name}' of shape [N, {classes}] "
                f"(0/1 per class), got {shown}"
            )
    else:
        hw = shape[1:] if len(shape) == 3 else shape
        if not (len(shape) == 2 or (len(shape) == 3 and shape[0] == 1)) or (sizes and tuple(hw) not in sizes):
            patch = " or ".join(f"{h}x{w}" for h, w in sorted(sizes)) or "H x W"
            raise StoreError(
                f"{where}target '{target.name}' ({target.kind}) expects array '{name}' of shape [N, 1, H, W] or "
                f"[N, H, W] with H x W = {patch} (the modalities' patch size), got {shown}"
            )
    integer = np.issubdtype(np.dtype(dtype), np.integer) or np.dtype(dtype) == np.bool_
    if target.kind in ("segmentation", "change") and not integer:
        raise StoreError(
            f"{where}target '{target.name}' ({target.kind}) expects integer class ids in array '{name}', got {dtype}"
        )


def check_declarations(
    store: str,
    targets: dict[str, Target],
    dates: Dates | None,
    pairs: dict[str, Pair],
    *,
    table: pd.DataFrame,
    arrays: dict[str, tuple[tuple[int, ...], str]],
    modalities: Collection[str],
) -> None:
    """Check declarations against what a store holds; :class:`StoreError` names what does not fit.

    ``arrays`` maps each array of the store to its per-sample shape and dtype; ``modalities`` are the
    names of the arrays that are modalities (their ``H x W`` is the patch size dense targets must have).
    """
    where = f"store '{store}': "
    sizes = {tuple(arrays[m][0][-2:]) for m in modalities if m in arrays and len(arrays[m][0]) == 3}
    for name, target in targets.items():
        if name in modalities or name in RESERVED_BATCH_KEYS or "@" in name:
            raise StoreError(
                f"{where}target '{name}': a target name is its batch key, so it must not be a modality name, "
                f"{', '.join(repr(k) for k in RESERVED_BATCH_KEYS)} or contain '@'"
            )
        if target.column is not None:
            _check_column(where, target, table)
        else:
            _check_array(where, target, arrays, sizes)
        if target.strata is not None:
            strata = targets.get(target.strata)
            if strata is None or strata.kind not in STRATA_KINDS:
                raise StoreError(
                    f"{where}target '{name}': strata '{target.strata}' must be a declared target of kind "
                    f"{' or '.join(STRATA_KINDS)} (declared: "
                    + (", ".join(f"{t.name} ({t.kind})" for t in targets.values()) or "none")
                    + ")"
                )
    if dates is not None:
        for key in ("group", "time"):
            column = getattr(dates, key)
            if column is not None and column not in table.columns:
                raise StoreError(
                    f"{where}dates.{key} names column '{column}', which the metadata table does not have "
                    f"(it has: {', '.join(map(str, table.columns))})"
                )
    for name, pair in pairs.items():
        for key in ("before", "after"):
            modality = getattr(pair, key)
            if modality not in modalities or modality not in arrays:
                raise StoreError(
                    f"{where}pair '{name}': {key} '{modality}' is not a modality of the store "
                    f"(it has: {', '.join(m for m in modalities if m in arrays) or 'none'})"
                )
        before, after = arrays[pair.before][0], arrays[pair.after][0]
        if before != after:
            raise StoreError(
                f"{where}pair '{name}': before '{pair.before}' has samples of shape {before} and after "
                f"'{pair.after}' {after}; the two dates must have equal shapes"
            )
        target = targets.get(pair.target)
        if target is None or target.kind != "change":
            got = "not declared" if target is None else f"of kind '{target.kind}'"
            raise StoreError(f"{where}pair '{name}': target '{pair.target}' must be a target of kind 'change' ({got})")
        hw = arrays[target.array][0][-2:]
        if tuple(hw) != tuple(before[-2:]):
            raise StoreError(
                f"{where}pair '{name}': change target '{target.name}' is {hw[0]}x{hw[1]} but the modalities "
                f"are {before[-2]}x{before[-1]}"
            )


__all__ = [
    "CLASSIFICATION_KINDS",
    "COLUMN_KINDS",
    "DENSE_KINDS",
    "STRATA_KINDS",
    "TARGET_KINDS",
    "Dates",
    "Pair",
    "Target",
    "TargetKind",
    "as_pair_dict",
    "as_target_dict",
    "check_declarations",
]
