"""The ``results.csv`` schema (versioned, documented in docs/results-schema.md) and merging runs.

Version 1 (the foundation) had ``init, protocol, task, fraction, seed, metric, value, encoder,
modality, num_labels, trainable_params, weight_decay`` (and ``k`` from the method zoo on); version 2
adds ``head_params``, ``steps``, ``best_step`` and ``schema_version``, and ``trainable_params``
counts encoder parameters only (the head's are in ``head_params``); version 3 adds ``fusion`` (how
the modalities in ``modality``, e.g. ``s2+s1``, were fused: ``none``, ``early``, ``stems``,
``late-concat``, ...) and ``missing`` (the modality blanked at test time, empty otherwise).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from eossl.io import atomic_path

SCHEMA_VERSION = 3
RESULT_COLUMNS = [
    "init",
    "protocol",
    "task",
    "fraction",
    "seed",
    "metric",
    "value",
    "encoder",
    "modality",
    "fusion",
    "missing",
    "num_labels",
    "trainable_params",
    "head_params",
    "steps",
    "best_step",
    "weight_decay",
    "k",
    "schema_version",
]
REQUIRED_COLUMNS = RESULT_COLUMNS[:7]
CURVE_COLUMNS = ["init", "protocol", "task", "fraction", "seed", "step", "epoch", "metric", "value"]


class ResultsError(ValueError):
    """A results file cannot be read as eossl results."""


def write_csv_atomic(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def load_results(run: Path) -> pd.DataFrame:
    """``RUN/results.csv`` (or a results CSV itself), checked against the schema and upgraded to the
    current version's columns (missing optional columns are empty)."""
    path = Path(run) / "results.csv" if Path(run).is_dir() else Path(run)
    if not path.exists():
        raise ResultsError(f"no results at '{path}': pass a folder written by 'eossl evaluate' or its results.csv")
    frame = pd.read_csv(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ResultsError(f"'{path}' lacks the columns {missing} of an eossl results file")
    versions = set(frame["schema_version"].dropna().astype(int)) if "schema_version" in frame else {1}
    if max(versions, default=1) > SCHEMA_VERSION:
        raise ResultsError(
            f"'{path}' has results schema version {max(versions)}; this eossl reads versions up to {SCHEMA_VERSION}"
        )
    extra = [c for c in frame.columns if c not in RESULT_COLUMNS]
    frame = frame.reindex(columns=RESULT_COLUMNS + extra)
    for column, default in (("fusion", "none"), ("missing", "")):
        values = frame[column].astype(object)
        frame[column] = values.where(values.notna(), default)
    return frame


def _run_names(runs: list[Path]) -> list[str]:
    names = [Path(r).name for r in runs]
    if len(set(names)) < len(names):  # same folder name in different places: use parent/name
        names = [f"{Path(r).parent.name}/{Path(r).name}" for r in runs]
    if len(set(names)) < len(names):
        raise ResultsError(f"runs {[str(r) for r in runs]} are not distinguishable by name")
    return names


def merge_runs(runs: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Results (and learning curves) of several runs in one frame with a ``run`` column; an init that
    occurs in more than one run is renamed ``"init (run)"`` so each run keeps its own rows."""
    if len(runs) < 2:
        raise ResultsError("compare needs at least two runs")
    names = _run_names(runs)
    frames, curves = [], []
    for run, name in zip(runs, names, strict=True):
        frames.append(load_results(run).assign(run=name))
        curve_path = Path(run) / "curves.csv"
        if curve_path.exists():
            curves.append(pd.read_csv(curve_path).assign(run=name))
    results = pd.concat(frames, ignore_index=True)
    shared = {i for i, n in results.groupby("init")["run"].nunique().items() if n > 1}
    curves_frame = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=[*CURVE_COLUMNS, "run"])
    for frame in (results, curves_frame):
        renamed = frame.init.isin(shared)
        frame.loc[renamed, "init"] = frame.loc[renamed, "init"] + " (" + frame.loc[renamed, "run"] + ")"
    return results, curves_frame
