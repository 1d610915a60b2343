"""Reading format v1 stores (written by earlier eossl versions, synthetic only): their declarations are
derived from what they hold, in memory (nothing is written). See :mod:`eossl.data.store`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from eossl.data.targets import Dates, Pair, Target


def upgrade_v1(store: Any) -> tuple[dict[str, Target], Dates | None, dict[str, Pair]]:
    """Declarations of a v1 (synthetic) store (a :class:`~eossl.data.store.SampleStore`) from what it holds;
    the rules are in :mod:`eossl.data.store`'s docstring."""
    columns, arrays = set(store.table.columns), set(store.arrays)
    described = store.attrs.get("targets") if isinstance(store.attrs.get("targets"), dict) else {}
    names = tuple(store.attrs.get("class_names", ()))

    def text(name: str) -> str:
        return described[name] if isinstance(described.get(name), str) else ""

    targets: dict[str, Target] = {}
    if "label" in columns:
        targets["label"] = Target("label", "single-label", column="label", class_names=names)
    if "multilabel" in arrays:
        fits = tuple(store.group["multilabel"].shape[1:]) == (len(names),)
        kept = names if fits else ()
        targets["multilabel"] = Target("multilabel", "multi-label", array="multilabel", class_names=kept)
    if "lulc" in arrays:
        strata = "multilabel" if "multilabel" in targets else None
        targets["mask"] = Target("mask", "segmentation", array="lulc", class_names=names, strata=strata)
    if "tree_cover" in columns:
        strata = "label" if "label" in targets else None
        targets["tree_cover"] = Target("tree_cover", "regression", column="tree_cover", strata=strata)
    targets = {name: replace(t, description=text(name)) for name, t in targets.items()}
    dates = None
    if "location_id" in columns:
        dates = Dates("location_id", "season" if "season" in columns else None)
    return targets, dates, {}
