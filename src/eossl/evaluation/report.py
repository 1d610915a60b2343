"""Tables (mean ± std over seeds), the label-efficiency plot and ``report.md`` from ``results.csv``."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import yaml
from pydantic import BaseModel

PRIMARY_METRIC = {"single-label": "accuracy", "multi-label": "mAP"}
BASELINES = ("random", "image-stats")


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and count over seeds per init, protocol, task, metric and fraction."""
    keys = ["task", "metric", "protocol", "init", "fraction"]
    return results.groupby(keys, sort=False)["value"].agg(["mean", "std", "count"]).reset_index()


def _fmt_fraction(f: float) -> str:
    return f"{f * 100:g}%"


def table(summary: pd.DataFrame, task: str, metric: str) -> str:
    """Markdown table: rows protocol/init, columns label fractions, cells mean ± std (best in bold)."""
    part = summary[(summary.task == task) & (summary.metric == metric)]
    if part.empty:
        return ""
    fractions = sorted(part.fraction.unique())
    best = part.groupby("fraction")["mean"].max()
    lines = [
        f"| protocol | init | {' | '.join(_fmt_fraction(f) for f in fractions)} |",
        "|---|---|" + "---:|" * len(fractions),
    ]
    for (protocol, init), rows in part.groupby(["protocol", "init"], sort=False):
        cells = []
        for f in fractions:
            row = rows[rows.fraction == f]
            if row.empty:
                cells.append("")
                continue
            mean, std = float(row["mean"].iloc[0]), float(row["std"].fillna(0).iloc[0])
            cell = f"{mean:.3f} ± {std:.3f}"
            cells.append(f"**{cell}**" if mean == best[f] else cell)
        lines.append(f"| {protocol} | {init} | {' | '.join(cells)} |")
    return "\n".join(lines)


def verdicts(summary: pd.DataFrame, fraction: float = 0.1) -> list[str]:
    """Does each pretrained linear probe beat every baseline at ``fraction`` by more than the seed std?"""
    lines = []
    linear = summary[(summary.protocol == "linear") & (summary.fraction.round(6) == round(fraction, 6))]
    for task, metric in PRIMARY_METRIC.items():
        part = linear[(linear.task == task) & (linear.metric == metric)].set_index("init")
        pretrained = [i for i in part.index if i not in BASELINES]
        for init in pretrained:
            mine = part.loc[init]
            for base in (b for b in BASELINES if b in part.index):
                other = part.loc[base]
                margin = mine["mean"] - other["mean"]
                spread = max(float(mine["std"] or 0), float(other["std"] or 0))
                ok = margin > spread
                lines.append(
                    f"{'PASS' if ok else 'FAIL'}: {task} {metric} at {_fmt_fraction(fraction)} labels, "
                    f"linear probe {init} {mine['mean']:.3f} vs {base} {other['mean']:.3f} "
                    f"(margin {margin:+.3f}, seed std {spread:.3f})"
                )
    return lines


def plot_label_efficiency(summary: pd.DataFrame, path: Path) -> Path:
    tasks = [t for t in PRIMARY_METRIC if t in set(summary.task)]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        metric = PRIMARY_METRIC[task]
        part = summary[(summary.task == task) & (summary.metric == metric)]
        colours = {init: f"C{i}" for i, init in enumerate(summary.init.unique())}  # one colour per init
        for (protocol, init), rows in part.groupby(["protocol", "init"], sort=False):
            rows = rows.sort_values("fraction")
            style = {"linear": "-", "knn": ":", "finetune": "--"}.get(protocol, "-.")  # one line style per protocol
            ax.errorbar(
                rows.fraction * 100,
                rows["mean"],
                yerr=rows["std"].fillna(0),
                fmt=style + "o",
                color=colours[init],
                capsize=3,
                label=f"{init} ({protocol})",
                markersize=4,
            )
        ax.set_xscale("log")
        ax.set_xlabel("labelled training samples (%)")
        ax.set_ylabel(metric)
        ax.set_title(task)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    tmp.replace(path)
    return path


def render_markdown(results: pd.DataFrame, config: BaseModel | dict | None = None) -> str:
    summary = summarise(results)
    parts = ["# eossl evaluation report", ""]
    counts = results.groupby(["fraction"])["num_labels"].first()
    parts.append(
        "Labelled training samples per fraction: "
        + ", ".join(f"{_fmt_fraction(f)} = {int(n)}" for f, n in counts.items())
        + "."
    )
    parts.append(
        f"Seeds: {sorted(results.seed.unique().tolist())}. Cells are test-split mean ± std over seeds; "
        "best per column in bold. The random-init encoder has its BatchNorm statistics re-estimated on "
        "the unlabelled training images."
    )
    parts.append("")
    for task in PRIMARY_METRIC:
        for metric in results[results.task == task].metric.unique():
            text = table(summary, task, metric)
            if text:
                parts += [f"## {task}: {metric}", "", text, ""]
    lines = verdicts(summary)
    if lines:
        parts += ["## Verdict at 10% labels", "", *[f"- {line}" for line in lines], ""]
    params = results.groupby(["protocol", "init"])["trainable_params"].max()
    parts += ["## Trainable parameters", "", "| protocol | init | trainable parameters |", "|---|---|---:|"]
    parts += [f"| {p} | {i} | {int(n):,} |" for (p, i), n in params.items()]
    parts += ["", "![label efficiency](label_efficiency.png)", ""]
    if config is not None:
        dumped = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
        parts += ["## Configuration", "", "```yaml", yaml.safe_dump(dumped, sort_keys=False).strip(), "```", ""]
    return "\n".join(parts)


def write_report(results: pd.DataFrame, out: Path, config: BaseModel | dict | None = None) -> Path:
    out = Path(out)
    plot_label_efficiency(summarise(results), out / "label_efficiency.png")
    path = out / "report.md"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render_markdown(results, config))
    tmp.replace(path)
    return path
