"""The ``results.csv`` schema (versioned, documented in docs/results-schema.md) and merging runs.

Version 1 (the foundation) had ``init, protocol, task, fraction, seed, metric, value, encoder,
modality, num_labels, trainable_params, weight_decay`` (and ``k`` from the method zoo on); version 2
adds ``head_params``, ``steps``, ``best_step`` and ``schema_version``, and ``trainable_params``
counts encoder parameters only (the head's are in ``head_params``); version 3 adds ``fusion`` (how
the modalities in ``modality``, e.g. ``s2+s1``, were fused: ``none``, ``early``, ``stems``,
``late-concat``, ...) and ``missing`` (the modality blanked at test time, empty otherwise); version 4
adds ``kind`` (the task kind of the row's task: tasks are named by the user, e.g. ``crop_type``, so the
report reads primary metrics and task order from the kind, :data:`eossl.evaluation.registry.TASK_KINDS`).
Older files read as ``kind = task`` (their task names were the kind names). Version 5 adds, for the
trained protocols, the budget rule's record (:mod:`eossl.evaluation.budget`): ``budget_steps`` (the
steps the rule gave the run; ``steps`` is what it ran), ``lr`` and ``encoder_lr_factor`` (the grid
point chosen on validation), ``stopped`` (``early`` or ``budget``) and ``converged`` (whether the
validation metric had stopped improving); older files have them empty, so their convergence is unknown.
Version 6 adds ``decoder`` (the registered decoder of a dense task's run, e.g. ``unet``; empty for pooled
tasks and older files) and the change-detection kind ``change`` (metrics ``f1``, ``precision``,
``recall``, ``iou`` of the change class and ``overall_accuracy``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from eossl.evaluation.registry import TASK_KINDS, kind_order
from eossl.io import atomic_path

SCHEMA_VERSION = 6
RESULT_COLUMNS = [
    "init",
    "protocol",
    "task",
    "kind",
    "fraction",
    "seed",
    "metric",
    "value",
    "encoder",
    "decoder",
    "modality",
    "fusion",
    "missing",
    "num_labels",
    "trainable_params",
    "head_params",
    "steps",
    "best_step",
    "budget_steps",
    "lr",
    "encoder_lr_factor",
    "stopped",
    "converged",
    "weight_decay",
    "k",
    "schema_version",
]
REQUIRED_COLUMNS = ["init", "protocol", "task", "fraction", "seed", "metric", "value"]  # every version has them
# learning curves carry no kind: join them with the results on task; ``modality`` and ``fusion`` (added
# after ``value``, so older readers keep working) name the setting of the curve's run, as in results.csv
CURVE_COLUMNS = ["init", "protocol", "task", "fraction", "seed", "step", "epoch", "metric", "value", "modality",
                 "fusion"]  # fmt: skip


from eossl.errors import ResultsError  # noqa: E402  (re-exported)


def write_csv_atomic(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def load_results(run: Path) -> pd.DataFrame:
    """``RUN/results.csv`` (or a results CSV itself), checked against the schema and upgraded to the
    current version's columns (missing optional columns are empty; versions 1-3 get ``kind = task``)."""
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
    return with_kinds(frame)


def with_kinds(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``kind`` on every row: rows without one (results of schema versions 1-3,
    hand-made frames) get ``kind = task``, as task names were the kind names then."""
    if "kind" in frame and frame["kind"].notna().all():
        return frame
    kinds = frame["kind"].astype(object) if "kind" in frame else pd.Series(None, index=frame.index, dtype=object)
    frame = frame.copy()
    frame["kind"] = kinds.where(kinds.notna(), frame["task"])
    return frame


def task_kinds(frame: pd.DataFrame) -> dict[str, str]:
    """``task -> kind`` of the tasks in a results or summary frame, in order of first appearance (the
    first row's kind when rows of a task disagree; ``kind = task`` where the frame has none)."""
    if frame.empty:
        return {}
    rows = with_kinds(frame[["task", "kind"]] if "kind" in frame else frame[["task"]])
    return dict(rows.drop_duplicates("task").itertuples(index=False, name=None))


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


def ordered_tasks(frame: pd.DataFrame, kinds: dict[str, str] | None = None) -> list[str]:
    """The tasks of ``frame`` in report order: by their kind's order (:func:`kind_order`), then by first
    appearance. ``kinds``: ``task -> kind`` (default: :func:`task_kinds` of ``frame``)."""
    kinds = task_kinds(frame) if kinds is None else kinds
    tasks = list(dict.fromkeys(frame["task"])) if not frame.empty else []
    return sorted(tasks, key=lambda t: kind_order(kinds.get(t, t)))


def primary_metric(kind: str) -> str | None:
    """The primary metric of a task kind (tables, comparisons, "labels saved"); None for an unknown kind."""
    cls = TASK_KINDS.get(kind)
    return cls.primary if cls is not None else None


def higher_is_better(kind: str) -> bool:
    cls = TASK_KINDS.get(kind)
    return cls.higher_is_better if cls is not None else True


def is_dense(kind: str) -> bool:
    cls = TASK_KINDS.get(kind)
    return bool(cls is not None and cls.dense)
