"""``report.md``, ``report.html`` and ``summary.csv`` from ``results.csv`` (and ``curves.csv``).

Tables hold the test-split mean ± std over seeds (best per column in bold) and, for primary metrics,
the 95% Student-t interval of the mean. Comparisons pair seeds (each seed is one label subset shared
by every init) and test the per-seed differences; "labels saved" interpolates the label fraction at
which a pretrained encoder reaches the from-scratch model trained on every label, stated only when that
reference converged (:mod:`eossl.evaluation.efficiency`). Cells of runs that had not converged in their
budget carry a †; the "Training budgets" section says how every trained run used its budget.

Primary metrics, task order and dense tasks come from each row's task kind (results schema v4's
``kind`` column; frames without one read as ``kind = task``), protocol order and baselines from the
evaluation registries. The tables are built in :mod:`eossl.evaluation.tables`, re-exported here.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from pydantic import BaseModel

from eossl.evaluation.efficiency import (
    convergence_table,
    headlines,
    labels_saved_table,
    missing_reference_line,
    needed_text,
)
from eossl.evaluation.html import write_html
from eossl.evaluation.plots import plot_convergence, plot_label_efficiency, plot_prediction_maps
from eossl.evaluation.registry import baseline_inits
from eossl.evaluation.results import is_dense, ordered_tasks, primary_metric, task_kinds, write_csv_atomic
from eossl.evaluation.tables import (
    LOWER_IS_BETTER,
    SETTING_SEPARATOR,
    base_init,
    comparison_table,
    comparisons,
    fusion_table,
    is_baseline,
    label_settings,
    multitask_comparisons,
    multitask_reference,
    multitask_section,
    overview_table,
    pct,
    resolve_baselines,
    setting_of,
    summarise,
    table,
)
from eossl.io import write_text_atomic

__all__ = [
    "LOWER_IS_BETTER",
    "SETTING_SEPARATOR",
    "base_init",
    "comparison_table",
    "comparisons",
    "fusion_table",
    "is_baseline",
    "label_settings",
    "labels_saved_table",
    "multitask_comparisons",
    "multitask_reference",
    "multitask_section",
    "overview_table",
    "render_markdown",
    "setting_of",
    "summarise",
    "table",
    "write_report",
]


def _figure(name: str) -> list[str]:
    title = Path(name).stem.replace("_", " ")
    return [f"## {title.capitalize()}", "", f"![{title}]({name})", ""]


def _comparison_section(comps: pd.DataFrame, task: str, metric: str) -> list[str]:
    return [
        f"### {task}: is A better than B? (paired over seeds, {metric})",
        "",
        "Mean difference A − B [95% interval], paired t-test verdict at p < 0.05.",
        "",
        comparison_table(comps, task),
        "",
    ]


def render_markdown(
    results: pd.DataFrame,
    config: BaseModel | dict | None = None,
    figures: list[str] = (),
    headline_fraction: float | None = None,
    baselines: tuple[str, ...] | None = None,
) -> str:
    """The report's markdown: headlines, overview, fusion, per-task tables and comparisons, multi-task
    section, labels needed, figures and the configuration. ``baselines``: None for the registry's."""
    baselines = resolve_baselines(baselines)
    fractions = sorted(results.fraction.unique())
    headline = headline_fraction if headline_fraction in fractions else fractions[0]
    fusion = fusion_table(results, headline, baselines)
    results = label_settings(results)
    summary = summarise(results)
    counts = results.groupby(["task", "fraction"])["num_labels"].first()
    parts = ["# eossl evaluation report", ""]
    saved = labels_saved_table(results, baselines)
    if not saved.empty:
        parts += ["## Labels saved", "", *headlines(saved), ""]
    elif missing := missing_reference_line(results, baselines):
        parts += ["## Labels saved", "", missing, ""]
    sizes = "; ".join(
        f"{t} " + ", ".join(f"{pct(f)} = {int(n)}" for (tt, f), n in counts.items() if tt == t)
        for t in results.task.unique()
    )
    parts += [
        f"Seeds: {sorted(results.seed.unique().tolist())}. Cells are the test-split mean ± std over seeds, best "
        "per column in bold; primary-metric tables add the 95% t-interval of the mean in brackets. Random and "
        "external inits have their BatchNorm statistics re-estimated on the unlabelled training images. "
        f"Labelled training samples: {sizes}.",
        "",
    ]
    overview = overview_table(summary, results, headline, baselines)
    if overview:
        parts += [f"## Overview at {pct(headline)} labels", "", overview, ""]
    if fusion:
        parts += [f"## Modality combinations at {pct(headline)} labels", "", fusion, ""]
    for figure in (f for f in figures if not f.startswith("prediction_maps")):
        parts += _figure(figure)
    comps = comparisons(results, baselines)
    kinds = task_kinds(results)
    for task in ordered_tasks(results, kinds):
        primary = primary_metric(kinds[task])
        metrics = list(results[results.task == task].metric.unique())
        for metric in sorted(metrics, key=lambda m: m != primary):  # primary metric first
            text = table(summary, task, metric, interval=metric == primary, baselines=baselines)
            if text:
                parts += [f"## {task}: {metric}", "", text, ""]
            if metric == primary and not comps.empty and task in set(comps.task):
                parts += _comparison_section(comps, task, metric)
    parts += multitask_section(multitask_comparisons(results, baselines))
    if not saved.empty:
        parts += [
            "## Labels needed to match training from scratch on 100%",
            "",
            "Fraction needed: where the mean curve reaches the reference's mean, interpolated in log fraction; "
            "[95% interval] from the per-seed curves when every seed reaches it.",
            "",
            "| task | init | protocol | reference (100% labels) | reference converged | fraction needed | seeds "
            "reaching it |",
            "|---|---|---|---|---|---:|---:|",
        ]
        parts += [f"| {r.task} | {r.init} | {r.protocol} | {r.reference}: {r.reference_value:.3f} | "
                  f"{r.reference_status} | {needed_text(r)} | {r.seeds_reached}/{r.seeds} |"
                  for r in saved.itertuples()]  # fmt: skip
        parts.append("")
    budgets = convergence_table(results)
    if budgets:
        parts += [
            "## Training budgets",
            "",
            "Every trained run follows one rule (docs/evaluation.md): the same budget steps for every init at one "
            "fraction, learning rates chosen per init on the validation split, early stopping not before half the "
            "budget. Steps and best step are means over seeds; † marks results with a run that had not converged "
            "(still improving at the end of its budget).",
            "",
            budgets,
            "",
        ]
    for figure in (f for f in figures if f.startswith("prediction_maps")):
        parts += _figure(figure)
    if config is not None:
        dumped = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
        parts += ["## Configuration", "", "```yaml", yaml.safe_dump(dumped, sort_keys=False).strip(), "```", ""]
    return "\n".join(parts)


def write_report(results: pd.DataFrame, out: Path, config: BaseModel | dict | None = None,
                 baselines: tuple[str, ...] | None = None) -> Path:  # fmt: skip
    """Plots, ``summary.csv``, ``comparisons.csv``, ``report.md`` and a self-contained ``report.html``.
    ``baselines``: None for the registry's (:func:`eossl.evaluation.registry.baseline_inits`); the
    labels of baseline inits with one in ``config`` (``external.label``, ``torchgeo.label``) are added."""
    baselines = resolve_baselines(baselines)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fusion_results, results = results, label_settings(results)
    summary, kinds = summarise(results), task_kinds(results)
    counts = results.groupby("fraction")["num_labels"].first().dropna().astype(int).to_dict()
    counts = counts if results.task.nunique() == 1 else None  # tasks stratified apart have their own counts
    figures = [plot_label_efficiency(summary, out / "label_efficiency.png", counts).name]
    curves_path = out / "curves.csv"
    if curves_path.exists():
        curves = pd.read_csv(curves_path)
        figure = plot_convergence(curves, out / "convergence.png", kinds, results)
        figures += [figure.name] if figure else []
    for task in (t for t in ordered_tasks(results, kinds) if is_dense(kinds[t])):
        figure = plot_prediction_maps(out / "predictions", task, out / f"prediction_maps_{task}.png")
        figures += [figure.name] if figure else []
    cfg = config.model_dump() if isinstance(config, BaseModel) else (config or {})
    for name in baseline_inits():  # baseline inits reported under a label of their own (external, torchgeo)
        section = cfg.get(name.replace("-", "_"))
        if isinstance(section, dict) and section.get("label"):
            baselines = (*baselines, section["label"])
    for name, frame in (("summary.csv", summary), ("comparisons.csv", comparisons(results, baselines))):
        write_csv_atomic(frame, out / name)
    path = out / "report.md"
    markdown = render_markdown(fusion_results, config, figures, cfg.get("headline_fraction"), baselines)
    write_text_atomic(path, markdown)
    write_html(path)
    return path
