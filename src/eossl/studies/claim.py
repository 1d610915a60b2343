"""The label-efficiency study's verdict on the headline claim and its two figures.

The claim (the source documents'): an encoder pretrained without labels and fine-tuned on 10% of the
labels matches or beats the same architecture trained from scratch on 100%. Each pretraining budget's
fine-tuning at 10% is compared with the from-scratch fine-tuning at 100% over seeds (different label
subsets, so Welch's interval of the difference, :func:`eossl.evaluation.statistics.welch_difference`).
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from eossl.evaluation.efficiency import REFERENCE_INIT, REFERENCE_PROTOCOL, not_converged
from eossl.evaluation.plots import fraction_axis, save_figure
from eossl.evaluation.results import higher_is_better, task_kinds
from eossl.evaluation.statistics import welch_difference


def budget_of(init: str) -> int | None:
    """``simclr-900`` -> 900: the pretraining steps the study's init names carry (None for ``random``)."""
    found = re.search(r"-(\d+)$", init)
    return int(found.group(1)) if found else None


def _verdict(low: float, mean: float, high: float) -> str:
    if low > 0:
        return "holds: significantly better"
    if mean >= 0:
        return "holds in the mean, not significantly"
    if high >= 0:
        return "not shown: worse in the mean, not significantly"
    return "does not hold: significantly worse"


def claim_verdicts(results: pd.DataFrame, task: str, metric: str, fraction: float) -> list[str]:
    """Markdown lines: the reference, then per pretraining budget the claim's comparison and verdict."""
    sign = 1.0 if higher_is_better(task_kinds(results)[task]) else -1.0
    rows = results[(results.task == task) & (results.metric == metric) & (results.protocol == REFERENCE_PROTOCOL)]
    scratch = rows[(rows.init == REFERENCE_INIT) & (rows.fraction == 1.0)]
    if scratch.empty:
        return ["No from-scratch fine-tuning on 100% of the labels: the claim cannot be tested."]
    unconverged = int(not_converged(scratch.converged).sum()) if "converged" in scratch else len(scratch)
    longer = scratch.reference_epochs.max() if "reference_epochs" in scratch else float("nan")
    rule = "the budget rule's, doubled while a seed was still improving, up to the study's limit"
    trained = "" if pd.isna(longer) else f", trained for {int(longer)} epochs ({rule})"
    lines = [
        f"Reference: from scratch ({REFERENCE_PROTOCOL}) on 100% of the labels{trained}, {metric} "
        f"{scratch.value.mean():.3f} ± {scratch.value.std(ddof=1) if len(scratch) > 1 else 0:.3f} after "
        f"{scratch.steps.astype(float).mean():,.0f} steps (budget {scratch.budget_steps.astype(float).max():,.0f}); "
        f"converged on {len(scratch) - unconverged} of {len(scratch)} seeds.",
        "",
        f"| pretraining | {metric} at {fraction:.0%} (fine-tuned) | difference to from scratch at 100% [95%] | "
        "verdict |",
        "|---|---:|---:|---|",
    ]
    for init in sorted({i for i in rows.init if budget_of(i) is not None}, key=budget_of):
        mine = rows[(rows.init == init) & (rows.fraction.round(9) == round(fraction, 9))]
        if mine.empty:
            continue
        d = welch_difference(sign * mine.value.to_numpy(), sign * scratch.value.to_numpy())
        lines.append(f"| {init} | {mine.value.mean():.3f} ± {mine.value.std(ddof=1) if len(mine) > 1 else 0:.3f} | "
                     f"{sign * d.mean:+.3f} [{sign * d.low:+.3f}, {sign * d.high:+.3f}] | "
                     f"{_verdict(d.low, d.mean, d.high)} |")  # fmt: skip
    if unconverged:
        lines += ["", f"The reference had not converged on {unconverged} seed(s): these verdicts flatter pretraining."]
    return lines


def plot_study_curves(summary: pd.DataFrame, task: str, metric: str, path: Path,
                      counts: dict[float, int] | None = None) -> Path:  # fmt: skip
    """The label-efficiency curves, one colour per pretraining budget (grey: from scratch), solid for
    fine-tuning and dashed for the linear probe, with the from-scratch 100% reference as a line."""
    part = summary[(summary.task == task) & (summary.metric == metric)]
    inits = sorted(part.init.unique(), key=lambda i: budget_of(i) or 0)
    colours = {init: "grey" if budget_of(init) is None else f"C{k}" for k, init in enumerate(inits)}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (protocol, init), rows in part.groupby(["protocol", "init"], sort=False):
        rows = rows.sort_values("fraction")
        ax.errorbar(rows.fraction * 100, rows["mean"], yerr=rows["std"].fillna(0), color=colours[init], capsize=3,
                    linestyle="-" if protocol == REFERENCE_PROTOCOL else "--", marker="o", markersize=4,
                    label=f"{init} ({protocol})")  # fmt: skip
    reference = part[(part.init == REFERENCE_INIT) & (part.protocol == REFERENCE_PROTOCOL) & (part.fraction == 1.0)]
    if not reference.empty:
        ax.axhline(reference["mean"].iloc[0], color="black", linewidth=0.8, linestyle=":",
                   label="from scratch, 100% labels")  # fmt: skip
    fraction_axis(ax, list(part.fraction.unique()), counts)
    ax.set(ylabel=metric, title=f"{task}: label efficiency per pretraining budget")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_saved_vs_compute(saved: pd.DataFrame, compute: pd.DataFrame, path: Path) -> Path | None:
    """Share of the labels needed to match the reference against pretraining samples seen, per
    protocol; None when no budget reaches the reference (or it was refused)."""
    if saved.empty or compute.empty:
        return None
    points = saved.merge(compute.assign(samples=compute.steps * compute.batch), on="init").dropna(
        subset=["fraction_needed"]
    )
    if points.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for protocol, rows in points.groupby("protocol", sort=False):
        rows = rows.sort_values("samples")
        ax.plot(rows.samples, rows.fraction_needed * 100, marker="o", label=protocol)
    ax.set(xscale="log", yscale="log", xlabel="pretraining samples seen (steps x batch)",
           ylabel="labels needed to match from scratch on 100% (%)")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
