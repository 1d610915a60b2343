"""Resuming an evaluation by cells (:class:`~eossl.evaluation.sink.Cell`).

Results are written after every cell, so an interrupted evaluation leaves ``results.csv`` with the
cells it finished. A new evaluation into that folder resumes from them when the folder's
``config.yaml`` equals its config (every key but :data:`IGNORED_KEYS`) and ``summary.json`` names the
same sources (store and weight files, by size and modification time): the rows and curves of the done
cells are kept, their cells skipped, and the learning rates they chose on validation reused for the
later seeds (``lr_search: first-seed``), so the final ``results.csv`` equals an uninterrupted run's.
Otherwise the old results are replaced, and the log says why.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from eossl.evaluation.budget import Rates
from eossl.evaluation.results import CURVE_COLUMNS, RESULT_COLUMNS, SCHEMA_VERSION
from eossl.evaluation.sink import CELL_COLUMNS, Cell

IGNORED_KEYS = ("out",)
"""Config keys that do not change results: a folder measured under other values of them resumes."""

TEXT_COLUMNS = ("init", "protocol", "task", "kind", "metric", "encoder", "decoder", "modality", "fusion", "missing",
                "stopped")  # fmt: skip
"""Columns read back as text, whatever they look like (a task named ``1`` stays ``"1"``)."""


@dataclass
class Previous:
    """What a resumed evaluation keeps from the folder: result rows and curve points of the ``done``
    cells, the learning rates each done cell chose and the non-finite values filled so far."""

    rows: list[dict[str, Any]]
    curves: list[dict[str, Any]]
    done: set[Cell]
    rates: dict[Cell, Rates] = field(default_factory=dict)
    filled: dict[str, int] = field(default_factory=dict)


def fingerprint(path: str | Path | None) -> dict[str, Any] | None:
    """Size and modification time of a file, or of each top-level entry of a folder (None: no local path)."""
    if path is None or "://" in str(path):
        return None
    path = Path(path)
    if not path.exists():
        return {"missing": str(path)}
    entries = sorted(path.iterdir()) if path.is_dir() else [path]
    return {entry.name: [entry.stat().st_size, entry.stat().st_mtime_ns] for entry in entries}


def sources(store: str | Path, files: dict[str, Path | None]) -> dict[str, Any]:
    """The fingerprints of the store and of the inits' weight files (``files``: init name -> file)."""
    found = {"store": fingerprint(store)}
    found.update({name: fingerprint(path) for name, path in files.items() if path is not None})
    return found


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as ``config.yaml`` holds it, without :data:`IGNORED_KEYS`."""
    plain = yaml.safe_load(yaml.safe_dump(config, sort_keys=False))
    return {key: value for key, value in plain.items() if key not in IGNORED_KEYS}


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted keys where two plain configs differ (``fusion.modes``), in order."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = list(dict.fromkeys([*old, *new]))
        return [d for k in keys for d in differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".")]


def read_exact(path: Path) -> pd.DataFrame:
    """A CSV this evaluation wrote, exactly as written: numbers parsed back to the same floats (pandas 3
    does by default, older pandas when asked), only empty cells missing, :data:`TEXT_COLUMNS` as text."""
    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=dict.fromkeys(TEXT_COLUMNS, str), **exact)


def _cell(row: Any) -> Cell:
    return Cell(str(row.init), str(row.protocol), str(row.task), float(row.fraction), int(row.seed),
                str(row.modality), str(row.fusion))  # fmt: skip


def _recorded_rates(frame: pd.DataFrame) -> dict[Cell, Rates]:
    trained = frame[frame["lr"].notna() & frame["encoder_lr_factor"].notna()].drop_duplicates(CELL_COLUMNS)
    return {_cell(row): Rates(float(row.lr), float(row.encoder_lr_factor)) for row in trained.itertuples()}


def _why_not(out: Path, config: dict[str, Any], found: dict[str, Any]) -> str | None:
    """Why the results in ``out`` cannot be resumed by an evaluation of ``config`` on ``found`` sources."""
    config_path, summary_path = out / "config.yaml", out / "summary.json"
    if not config_path.exists():
        return "it has no config.yaml"
    try:
        saved = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
        summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.exists() else None
    except (OSError, ValueError, yaml.YAMLError) as exc:
        return f"its config.yaml or summary.json cannot be read ({exc})"
    changed = differences(comparable(saved) if isinstance(saved, dict) else {}, comparable(config))
    if changed:
        shown = ", ".join(f"'{key}'" for key in changed[:3]) + (
            f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        )
        return f"its config.yaml differs in {shown}"
    if not isinstance(summary, dict) or "sources" not in summary:
        return "it has no summary.json naming the store and weights it measured"
    moved = [
        name for name in dict.fromkeys([*summary["sources"], *found]) if summary["sources"].get(name) != found.get(name)
    ]
    if moved:
        return f"the {', '.join(moved)} changed since (size or modification time)"
    return None


def previous_results(out: Path, config: dict[str, Any], found: dict[str, Any],
                     log: Callable[[str], None]) -> Previous | None:  # fmt: skip
    """The done cells of the evaluation in ``out`` if this one (``config``: its dumped config, ``found``:
    its :func:`sources`) can resume it; None (logging why, when there were results) otherwise."""
    results_path, curves_path = out / "results.csv", out / "curves.csv"
    if not results_path.exists():
        return None
    reason = _why_not(out, config, found)
    frame = curves = None
    if reason is None:
        try:
            frame = read_exact(results_path)
            curves = read_exact(curves_path) if curves_path.exists() else None
        except (OSError, ValueError) as exc:
            reason = f"its results.csv or curves.csv cannot be read ({exc})"
    if reason is None and (list(frame.columns) != RESULT_COLUMNS or set(frame.schema_version) - {SCHEMA_VERSION}):
        reason = f"its results.csv is not of results schema {SCHEMA_VERSION}"
    if reason is None and (curves is None or list(curves.columns) != CURVE_COLUMNS):
        reason = "its curves.csv is missing or of an older eossl (no modality and fusion columns)"
    if reason is not None:
        log(f"replacing the results in '{out}' ({reason}): evaluating from the start")
        return None
    frame["missing"] = frame["missing"].fillna("")
    done = {_cell(row) for row in frame.drop_duplicates(CELL_COLUMNS).itertuples()}
    kept = curves[pd.Series([_cell(row) in done for row in curves.itertuples()], index=curves.index, dtype=bool)]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    filled = {str(k): int(v) for k, v in (summary.get("filled_nonfinite_values") or {}).items()}
    return Previous(frame.to_dict("records"), kept.to_dict("records"), done, _recorded_rates(frame), filled)


def count_done(cells: Iterable[Cell], done: set[Cell]) -> int:
    """How many of ``cells`` are in ``done``."""
    return sum(cell in done for cell in cells)
