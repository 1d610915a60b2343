"""Labels saved against a converged reference, and how every trained run used its budget.

The reference of a task is the model trained from scratch (``random`` init, ``finetune`` protocol) on
100% of the labels. It must have converged on every seed (results schema 5's ``converged``: the
validation metric stopped improving within its budget, :mod:`eossl.evaluation.budget`); otherwise,
or when its convergence is unknown (older results), no labels-saved number is given and the reason
says why. A pretrained init's "fraction needed" is where its mean curve reaches the reference's mean
(interpolated in log fraction, :func:`~eossl.evaluation.statistics.labels_saved`); its interval comes
from the per-seed curves (a t-interval of the log fractions, back-transformed and clipped to the
measured fractions), given when every seed reaches the reference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from eossl.evaluation.results import higher_is_better, ordered_tasks, primary_metric, task_kinds
from eossl.evaluation.statistics import labels_saved, mean_interval
from eossl.evaluation.tables import base_init, is_baseline, pct, resolve_baselines, setting_of

REFERENCE_INIT, REFERENCE_PROTOCOL = "random", "finetune"
SAVED_COLUMNS = [
    "task", "metric", "init", "protocol", "reference", "reference_value", "reference_steps", "reference_status",
    "refused", "fraction_needed", "low", "high", "seeds_reached", "seeds", "at_smallest",
]  # fmt: skip


def not_converged(values: pd.Series) -> pd.Series:
    """Rows whose run is recorded as not converged (``False``; empty means unknown or not trained)."""
    return values.astype(str).str.lower().eq("false")


def _status(rows: pd.DataFrame) -> str:
    """``converged``, ``not converged`` or ``unknown`` for the reference's rows (one per seed)."""
    if "converged" not in rows or rows["converged"].isna().any():
        return "unknown"
    return "not converged" if not_converged(rows["converged"]).any() else "converged"


def _refusal(status: str, rows: pd.DataFrame) -> str:
    if status == "converged":
        return ""
    steps = f"{int(rows['steps'].max()):,} steps" if "steps" in rows and rows["steps"].notna().any() else "its run"
    if status == "unknown":
        return f"the reference's convergence is not recorded (results older than schema 5); {steps}"
    count = int(not_converged(rows["converged"]).sum())
    return f"{count} of {len(rows)} seeds of the reference were still improving at the end of {steps}"


def _per_seed(curve: pd.DataFrame, reference: float, sign: float) -> list[float | None]:
    return [
        labels_saved(seed_rows.fraction.to_numpy(), sign * seed_rows["value"].to_numpy(), sign * reference)
        for _, seed_rows in curve.groupby("seed")
    ]


def labels_saved_table(results: pd.DataFrame, baselines: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Per task, pretrained init and protocol: the label fraction at which it reaches the converged
    from-scratch reference on 100% of the labels, with its interval over seeds (or why not)."""
    baselines = resolve_baselines(baselines)
    kinds = task_kinds(results)
    normal = results[results["missing"].fillna("").eq("")] if "missing" in results else results
    rows = []
    for task in ordered_tasks(normal, kinds):
        metric = primary_metric(kinds[task])
        sign = 1.0 if higher_is_better(kinds[task]) else -1.0
        part = normal[(normal.task == task) & (normal.metric == metric)]
        for (protocol, init), curve in part.groupby(["protocol", "init"], sort=False):
            if is_baseline(init, baselines):
                continue
            scratch = part[(part.init.map(base_init) == REFERENCE_INIT) & (part.protocol == REFERENCE_PROTOCOL)
                           & (part.fraction == 1.0) & (part.init.map(setting_of) == setting_of(init))]  # fmt: skip
            if scratch.empty:
                continue
            status = _status(scratch)
            value = float(scratch["value"].mean())
            row = {"task": task, "metric": metric, "init": init, "protocol": protocol,
                   "reference": f"{scratch.init.iloc[0]} ({REFERENCE_PROTOCOL})", "reference_value": value,
                   "reference_steps": scratch["steps"].max() if "steps" in scratch else np.nan,
                   "reference_status": status, "refused": _refusal(status, scratch), "fraction_needed": np.nan,
                   "low": np.nan, "high": np.nan, "seeds_reached": 0, "seeds": curve.seed.nunique(),
                   "at_smallest": False}  # fmt: skip
            if status == "converged":
                means = curve.groupby("fraction")["value"].mean()
                needed = labels_saved(means.index.to_numpy(), sign * means.to_numpy(), sign * value)
                seeds = _per_seed(curve, value, sign)
                reached = [f for f in seeds if f is not None]
                row.update(fraction_needed=np.nan if needed is None else needed, seeds_reached=len(reached),
                           at_smallest=needed is not None and needed == means.index.min())  # fmt: skip
                if len(reached) == len(seeds) >= 2:
                    interval = mean_interval(np.log(reached))  # clipped to the measured fractions:
                    lowest, highest = float(means.index.min()), float(means.index.max())  # no extrapolation
                    row.update(low=float(np.clip(np.exp(interval.low), lowest, highest)),
                               high=float(np.clip(np.exp(interval.high), lowest, highest)))  # fmt: skip
            rows.append(row)
    return pd.DataFrame(rows, columns=SAVED_COLUMNS)


def needed_text(row: pd.Series) -> str:
    """``23.7% [15.1%, 37.2%]``, ``≤ 1%`` (reached at the smallest fraction), ``not reached`` or ``not stated``."""
    if row.refused:
        return "not stated"
    if pd.isna(row.fraction_needed):
        return "not reached"
    if row.at_smallest:
        return f"≤ {pct(row.fraction_needed)}"
    interval = f" [{pct(row.low)}, {pct(row.high)}]" if pd.notna(row.low) and row.low != row.high else ""
    return f"{pct(row.fraction_needed)}{interval}"


def headlines(saved: pd.DataFrame) -> list[str]:
    """One line per task: the pretrained init and protocol needing the fewest labels, or why none is stated."""
    lines = []
    for task, part in saved.groupby("task", sort=False):
        r = part.iloc[0]
        reference = f"{r.reference} on 100% of the labels ({r.metric} {r.reference_value:.3f}"
        reference += f" after {int(r.reference_steps):,} steps)" if pd.notna(r.reference_steps) else ")"
        if r.refused:
            lines.append(f"- **{task}**: no labels-saved number: {r.refused}. Train the reference longer "
                         "(`finetune.epochs`) or run `eossl study label-efficiency`.")  # fmt: skip
            continue
        reached = part.dropna(subset=["fraction_needed"])
        if reached.empty:
            lines.append(f"- **{task}**: no pretrained encoder reaches {reference} with fewer labels.")
            continue
        best = reached.sort_values("fraction_needed").iloc[0]
        saved_share = f"{'≥ ' if best.at_smallest else ''}{pct(1 - best.fraction_needed)} saved"
        lines.append(f"- **{task}**: {best.init} ({best.protocol}) reaches {reference}, converged, with "
                     f"**{needed_text(best)} of the labels** ({saved_share}; {best.seeds_reached} of "
                     f"{best.seeds} seeds reach it).")  # fmt: skip
    return lines


def missing_reference_line(results: pd.DataFrame, baselines: tuple[str, ...] | None = None) -> str:
    """Why there is no labels-saved section when pretrained inits were evaluated ('' when there is one)."""
    inits = set(results.init.map(base_init))
    pretrained = [i for i in results.init.unique() if not is_baseline(i, resolve_baselines(baselines))]
    scratch = results[(results.init.map(base_init) == REFERENCE_INIT) & (results.protocol == REFERENCE_PROTOCOL)]
    if not pretrained or (REFERENCE_INIT in inits and (scratch.fraction == 1.0).any()):
        return ""
    return ("No labels-saved number: it needs the from-scratch reference, `random` init with `finetune` on 100% "
            "of the labels trained to convergence, which this run does not have. Inits are compared at equal "
            "labels below; `eossl study label-efficiency` measures labels saved.")  # fmt: skip


def _count(values: pd.Series) -> str:
    mean = values.astype(float).mean()
    return "–" if pd.isna(mean) else f"{mean:,.0f}"


def convergence_table(results: pd.DataFrame) -> str:
    """Markdown: per trained protocol, init and fraction, the budget and how the runs used it (mean steps
    and best step over seeds, early stops, converged runs, the rates chosen); '' without trained runs."""
    if "converged" not in results or "budget_steps" not in results:
        return ""
    columns = ["steps", "best_step", "stopped", "converged", "lr", "encoder_lr_factor"]
    trained = results[results["budget_steps"].notna()]
    trained = trained.reindex(columns=list(dict.fromkeys([*trained.columns, *columns])))
    if trained.empty:
        return ""
    first = trained[trained.metric == trained.task.map({t: primary_metric(k) for t, k in task_kinds(trained).items()})]
    lines = ["| protocol | init | task | labels | budget steps | steps run | best step | stopped early | converged "
             "| lr (encoder x) |", "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    keys = ["protocol", "init", "task", "fraction"]
    for (protocol, init, task, fraction), runs in first.groupby(keys, sort=False):
        n = len(runs)
        early = int(runs["stopped"].astype(str).eq("early").sum())
        done = n - int(not_converged(runs["converged"]).sum())
        mark = "" if done == n else " †"
        chosen = runs.reindex(columns=["lr", "encoder_lr_factor"]).dropna().drop_duplicates()
        rates = ", ".join(f"{lr:g} (x{factor:g})" for lr, factor in chosen.itertuples(index=False)) or "–"
        lines.append(f"| {protocol} | {init} | {task} | {pct(fraction)} | {int(runs.budget_steps.max()):,} | "
                     f"{_count(runs.steps)} | {_count(runs.best_step)} | {early}/{n} | {done}/{n}{mark} | "
                     f"{rates} |")  # fmt: skip
    return "\n".join(lines)


__all__ = [
    "REFERENCE_INIT",
    "REFERENCE_PROTOCOL",
    "convergence_table",
    "headlines",
    "labels_saved_table",
    "missing_reference_line",
    "needed_text",
    "not_converged",
]
