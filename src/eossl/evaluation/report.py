"""``report.md``, ``report.html`` and ``summary.csv`` from ``results.csv`` (and ``curves.csv``).

Tables hold the test-split mean ± std over seeds (best per column in bold) and, for primary metrics,
the 95% Student-t interval of the mean. Comparisons pair seeds (each seed is one label subset shared
by every init) and test the per-seed differences; "labels saved" interpolates the label fraction at
which a pretrained encoder reaches the from-scratch model trained on every label
(:mod:`eossl.evaluation.statistics`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import yaml
from pydantic import BaseModel

from eossl.evaluation.html import write_html
from eossl.evaluation.plots import plot_convergence, plot_label_efficiency, plot_prediction_maps
from eossl.evaluation.results import write_csv_atomic
from eossl.evaluation.statistics import labels_saved, mean_interval, paired_comparison
from eossl.evaluation.tasks import PRIMARY_METRIC, TASKS
from eossl.io import write_text_atomic

BASELINES = ("random", "image-stats", "external")
PROTOCOL_ORDER = ("knn", "linear", "frozen", "adapter", "finetune", "multitask")


SETTING_SEPARATOR = " · "


def base_init(init: str) -> str:
    """``"random (run-a)"`` -> ``"random"``: inits merged from several runs carry the run's name, and
    inits of a run over several modality settings carry the setting (``"random · s2+s1 late-concat"``)."""
    return init.split(SETTING_SEPARATOR)[0].split(" (")[0]


def setting_of(init: str) -> str:
    """The modality setting an init label carries (empty when the run had one setting)."""
    return init.split(SETTING_SEPARATOR, 1)[1] if SETTING_SEPARATOR in init else ""


def _setting_names(results: pd.DataFrame) -> pd.Series:
    """``"s2+s1 late-concat (s1 missing)"`` per row, from the modality, fusion and missing columns."""

    def column(name: str, default: str) -> pd.Series:
        if name not in results:
            return pd.Series(default, index=results.index, dtype=object)
        values = results[name].astype(object)
        return values.where(values.notna(), default)

    fusion, missing = column("fusion", "none"), column("missing", "")
    name = column("modality", "").astype(str) + fusion.map(lambda f: "" if f == "none" else f" {f}")
    return name + missing.map(lambda m: f" ({m} missing)" if m else "")


def label_settings(results: pd.DataFrame) -> pd.DataFrame:
    """When results cover several modality settings (combination, fusion, missing modality), append the
    setting to each init so every table keeps them apart; otherwise return ``results`` unchanged."""
    if results.empty or results.init.str.contains(SETTING_SEPARATOR, regex=False).any():
        return results
    names = _setting_names(results)
    if names.nunique() <= 1:
        return results
    return results.assign(init=results.init + SETTING_SEPARATOR + names)


def is_baseline(init: str, baselines: tuple[str, ...] = BASELINES) -> bool:
    return base_init(init) in baselines


def _protocol_rank(protocol: str) -> int:
    head = protocol.split("-")[0]
    return PROTOCOL_ORDER.index(head) if head in PROTOCOL_ORDER else len(PROTOCOL_ORDER)


def _ordered(frame: pd.DataFrame, baselines: tuple[str, ...]) -> pd.DataFrame:
    """Report order: protocols by PROTOCOL_ORDER, pretrained inits before baselines (stable otherwise)."""
    keys = frame.assign(
        _rank=frame.protocol.map(_protocol_rank), _base=frame.init.map(lambda i: is_baseline(i, baselines))
    )
    return keys.sort_values(["_rank", "protocol", "_base"], kind="stable").drop(columns=["_rank", "_base"])


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, std, count and 95% interval over seeds per task, metric, protocol, init and fraction."""
    keys = ["task", "metric", "protocol", "init", "fraction"]
    rows = []
    for key, part in results.groupby(keys, sort=False):
        interval = mean_interval(part["value"].to_numpy())
        rows.append(dict(zip(keys, key, strict=True), mean=interval.mean, std=interval.std, count=interval.n,
                         ci_low=interval.low, ci_high=interval.high))  # fmt: skip
    return pd.DataFrame(rows, columns=[*keys, "mean", "std", "count", "ci_low", "ci_high"])


def _pct(f: float) -> str:
    return f"{f * 100:.3g}%"


def _params(n: float) -> str:
    n = int(n)
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}K" if n >= 1e3 else str(n)


LOWER_IS_BETTER = {"rmse", "mae"}


def _best(values: pd.Series, metric: str) -> float:
    return values.min() if metric in LOWER_IS_BETTER else values.max()


def _primary(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of each task's primary metric."""
    return frame[frame.metric == frame.task.map(PRIMARY_METRIC)]


def _grid(
    part: pd.DataFrame,
    column_key: str,
    columns: list,
    header: list[str],
    cell: Callable[[pd.Series], str],
    baselines: tuple[str, ...],
    row_label: Callable[[str, str], str] = lambda protocol, init: protocol,
    empty: str = "",
) -> str:
    """Markdown table of ``part``: one row per (protocol, init) in report order, one column per value of
    ``column_key`` in ``columns``, cells drawn by ``cell`` from that row of ``part``."""
    lines = [f"| {' | '.join(header)} |", "|---|---|" + "---:|" * len(columns)]
    for (protocol, init), rows in _ordered(part, baselines).groupby(["protocol", "init"], sort=False):
        by_column = {key: group.iloc[0] for key, group in rows.groupby(column_key)}
        cells = [cell(by_column[c]) if c in by_column else empty for c in columns]
        lines.append(f"| {row_label(protocol, init)} | {init} | {' | '.join(cells)} |")
    return "\n".join(lines)


def _mean_std(r: pd.Series, bold: bool) -> str:
    text = f"{r['mean']:.3f} ± {0 if pd.isna(r['std']) else r['std']:.3f}"
    return f"**{text}**" if bold else text


def table(summary: pd.DataFrame, task: str, metric: str, interval: bool = False,
          baselines: tuple[str, ...] = BASELINES) -> str:  # fmt: skip
    """Markdown table: rows protocol/init, columns label fractions, cells mean ± std (best in bold)."""
    part = summary[(summary.task == task) & (summary.metric == metric)]
    if part.empty:
        return ""
    fractions = sorted(part.fraction.unique())
    best = part.groupby("fraction")["mean"].agg(lambda v: _best(v, metric))

    def cell(r: pd.Series) -> str:
        ci = f" [{r.ci_low:.3f}, {r.ci_high:.3f}]" if interval and r["count"] > 1 else ""
        return _mean_std(r, r["mean"] == best[r.fraction]) + ci

    header = ["protocol", "init", *(_pct(f) for f in fractions)]
    return _grid(part, "fraction", fractions, header, cell, baselines)


def overview_table(summary: pd.DataFrame, results: pd.DataFrame, fraction: float,
                   baselines: tuple[str, ...] = BASELINES) -> str:  # fmt: skip
    """SpectralEarth-style table at one label fraction: rows protocol (trainable encoder parameters) x
    init, columns the tasks' primary metrics (mean ± std), best per column in bold."""
    part = _primary(summary[summary.fraction.round(9) == round(fraction, 9)])
    if part.empty:
        return ""
    tasks = [t for t in TASKS if t in set(part.task)]
    params = results.groupby(["protocol", "init"])["trainable_params"].max()
    best = part.groupby("task")["mean"].max()  # primary metrics are all higher-is-better

    def row_label(protocol: str, init: str) -> str:
        n = params.get((protocol, init))
        return f"{protocol} ({_params(n) if pd.notna(n) else '?'})"

    def cell(r: pd.Series) -> str:
        return _mean_std(r, r["mean"] == best[r.task])

    header = ["protocol (trainable encoder params)", "init", *(f"{t} ({PRIMARY_METRIC[t]})" for t in tasks)]
    return _grid(part, "task", tasks, header, cell, baselines, row_label, empty="–")


def comparisons(results: pd.DataFrame, baselines: tuple[str, ...] = BASELINES) -> pd.DataFrame:
    """Every pretrained init against every baseline of the same protocol, task (primary metric) and
    fraction, paired over seeds: mean difference, its 95% interval, p-value and verdict."""
    rows = []
    primary = _primary(results).assign(_setting=lambda f: f.init.map(setting_of))
    for (task, protocol, fraction, _), part in primary.groupby(["task", "protocol", "fraction", "_setting"],
                                                               sort=False):  # fmt: skip
        by_init = part.pivot_table(index="seed", columns="init", values="value")
        for a in (i for i in by_init.columns if not is_baseline(i, baselines)):
            for b in (i for i in by_init.columns if is_baseline(i, baselines)):
                pair = by_init[[a, b]].dropna()
                if pair.empty:
                    continue
                c = paired_comparison(pair[a].to_numpy(), pair[b].to_numpy())
                rows.append({"task": task, "protocol": protocol, "fraction": fraction, "a": a, "b": b,
                             "difference": c.difference.mean, "low": c.difference.low, "high": c.difference.high,
                             "p_value": c.p_value, "wins": c.wins, "n": c.n, "verdict": c.verdict})  # fmt: skip
    return pd.DataFrame(rows)


def comparison_table(comps: pd.DataFrame, task: str) -> str:
    part = comps[comps.task == task] if not comps.empty else comps
    if part.empty:
        return ""
    fractions = sorted(part.fraction.unique())
    mark = {"A better": "better", "B better": "worse", "no significant difference": "n.s."}

    def cell(r: pd.Series) -> str:
        if r.n > 1 and r.low == r.high:  # e.g. 100% labels: one subset, a deterministic probe
            return f"{r.difference:+.3f} {mark[r.verdict]} (same on every seed)"
        return f"{r.difference:+.3f} [{r.low:+.3f}, {r.high:+.3f}] {mark[r.verdict]} (p={r.p_value:.2g})"

    pairs = part.assign(init=part.a + " vs " + part.b)
    header = ["protocol", "A vs B", *(_pct(f) for f in fractions)]
    return _grid(pairs, "fraction", fractions, header, cell, ())


def labels_saved_table(summary: pd.DataFrame, baselines: tuple[str, ...] = BASELINES) -> pd.DataFrame:
    """Per task, pretrained init and protocol: the label fraction at which it reaches the model trained
    from scratch on 100% of the labels.

    The reference is the best random-init result at 100% over every protocol run: fine-tuning from
    scratch, or a probe on random features when that scores higher (a short from-scratch schedule must
    not make the pretrained encoder look better than it is).
    """
    rows = []
    for task, metric in PRIMARY_METRIC.items():
        part = summary[(summary.task == task) & (summary.metric == metric)]
        scratch = part[(part.init.map(base_init) == "random") & (part.fraction == 1.0)]
        if scratch.empty:
            continue
        best = scratch.loc[scratch["mean"].idxmax()] if TASKS[task].higher_is_better else scratch.loc[
            scratch["mean"].idxmin()]  # fmt: skip
        reference, value = f"{best.init} ({best.protocol})", float(best["mean"])
        for (protocol, init), curve in part.groupby(["protocol", "init"], sort=False):
            if is_baseline(init, baselines):
                continue
            needed = labels_saved(curve.fraction.to_numpy(), curve["mean"].to_numpy(), value)
            rows.append({"task": task, "metric": metric, "init": init, "protocol": protocol, "reference": reference,
                         "reference_value": value, "fraction_needed": needed,
                         "at_smallest": needed is not None and needed == curve.fraction.min()})  # fmt: skip
    return pd.DataFrame(rows, columns=["task", "metric", "init", "protocol", "reference", "reference_value",
                                       "fraction_needed", "at_smallest"])  # fmt: skip


def fusion_table(results: pd.DataFrame, fraction: float) -> str:
    """ben-ge-style fusion table at one label fraction: one block per init and protocol, rows the
    modality settings (combination, fusion mode, missing modality), columns each task's primary metric
    (mean ± std over seeds), best per column and block in bold. Empty when there is one setting."""
    part = _primary(results[results.fraction.round(9) == round(fraction, 9)])
    if part.empty or _setting_names(part).nunique() <= 1:
        return ""
    part = part.assign(init=part.init.map(base_init), setting=_setting_names(part))
    tasks = [t for t in TASKS if t in set(part.task)]
    header = ["init", "protocol", "modalities", *(f"{t} ({PRIMARY_METRIC[t]})" for t in tasks)]
    lines = [f"| {' | '.join(header)} |", "|---|---|---|" + "---:|" * len(tasks)]
    for (init, protocol), block in _ordered(part, BASELINES).groupby(["init", "protocol"], sort=False):
        stats = block.groupby(["setting", "task"], sort=False)["value"].agg(["mean", "std"])
        best = stats.groupby("task")["mean"].max()
        for setting in block.setting.unique():
            cells = []
            for t in tasks:
                if (setting, t) in stats.index:
                    r = stats.loc[(setting, t)]
                    cells.append(_mean_std(r, r["mean"] == best[t]))
                else:
                    cells.append("–")
            lines.append(f"| {init} | {protocol} | {setting} | {' | '.join(cells)} |")
    return "\n".join(lines)


def multitask_reference(protocol: str) -> str:
    """The single-task protocol a multi-task one is compared with: ``frozen`` for ``multitask-frozen-*``
    (heads on a frozen encoder), else ``finetune`` (full fine-tuning)."""
    return "frozen" if protocol.startswith("multitask-frozen") else "finetune"


def multitask_comparisons(results: pd.DataFrame, baselines: tuple[str, ...] = BASELINES) -> pd.DataFrame:
    """Every multi-task protocol against its single-task reference (:func:`multitask_reference`) per init,
    task (primary metric) and fraction, paired over the seeds both have: means and stds of each, mean
    difference multi − single with its 95% interval, paired t-test p-value and verdict."""
    rows = []
    primary = _primary(results)
    for protocol in (p for p in primary.protocol.unique() if p.split("-")[0] == "multitask"):
        reference = multitask_reference(protocol)
        part = primary[primary.protocol.isin([protocol, reference])]
        for (init, task, fraction), group in part.groupby(["init", "task", "fraction"], sort=False):
            by_protocol = group.pivot_table(index="seed", columns="protocol", values="value")
            if protocol not in by_protocol or reference not in by_protocol:
                continue
            pair = by_protocol[[protocol, reference]].dropna()
            if pair.empty:
                continue
            multi, single = mean_interval(pair[protocol].to_numpy()), mean_interval(pair[reference].to_numpy())
            c = paired_comparison(pair[protocol].to_numpy(), pair[reference].to_numpy())
            verdict = c.verdict
            if not TASKS[task].higher_is_better:  # a lower value is the better one
                verdict = {"A better": "B better", "B better": "A better"}.get(verdict, verdict)
            rows.append({"protocol": protocol, "reference": reference, "init": init, "task": task,
                         "metric": PRIMARY_METRIC[task], "fraction": fraction, "single_mean": single.mean,
                         "single_std": single.std, "multi_mean": multi.mean, "multi_std": multi.std,
                         "difference": c.difference.mean, "low": c.difference.low, "high": c.difference.high,
                         "p_value": c.p_value, "n": c.n, "verdict": verdict})  # fmt: skip
    columns = ["protocol", "reference", "init", "task", "metric", "fraction", "single_mean", "single_std",
               "multi_mean", "multi_std", "difference", "low", "high", "p_value", "n", "verdict"]  # fmt: skip
    frame = pd.DataFrame(rows, columns=columns)
    if frame.empty:
        return frame
    order = frame.assign(
        _base=frame.init.map(lambda i: is_baseline(i, baselines)), _task=frame.task.map(list(TASKS).index)
    )
    return order.sort_values(["protocol", "_base", "init", "_task", "fraction"], kind="stable").drop(
        columns=["_base", "_task"]
    )


def multitask_section(comps: pd.DataFrame) -> list[str]:
    """Markdown lines of the "Multi-task vs single-task" section (none without multi-task comparisons)."""
    if comps.empty:
        return []
    mark = {"A better": "better", "B better": "worse", "no significant difference": "n.s."}
    parts = [
        "## Multi-task vs single-task",
        "",
        "One encoder with a head per task trained together, against the same encoder trained per task "
        "(primary metrics, test split). Difference = multi-task − single-task [95% interval], paired over "
        "seeds (t-test; better/worse at p < 0.05). The multi-task model trains on the label subset of its "
        "first task's stratification, so for tasks stratified otherwise the paired runs saw different samples "
        "of about the same number.",
        "",
    ]
    for (protocol, reference), part in comps.groupby(["protocol", "reference"], sort=False):
        parts += [
            f"### {protocol} vs {reference}",
            "",
            f"| init | task (metric) | labels | single-task ({reference}) | multi-task ({protocol}) | difference | p |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for r in part.itertuples():
            single = _mean_std({"mean": r.single_mean, "std": r.single_std}, False)
            multi = _mean_std({"mean": r.multi_mean, "std": r.multi_std}, False)
            difference = f"{r.difference:+.3f} [{r.low:+.3f}, {r.high:+.3f}] {mark[r.verdict]}"
            parts.append(f"| {r.init} | {r.task} ({r.metric}) | {_pct(r.fraction)} | {single} | {multi} | "
                         f"{difference} | {r.p_value:.2g} |")  # fmt: skip
        parts.append("")
    return parts


def _needed(row) -> str:
    """'23.7%', or '≤ 1%' when the smallest measured fraction already reaches the reference."""
    if pd.isna(row.fraction_needed):
        return "not reached"
    return f"≤ {_pct(row.fraction_needed)}" if row.at_smallest else _pct(row.fraction_needed)


def _headlines(saved: pd.DataFrame) -> list[str]:
    lines = []
    for task, part in saved.groupby("task", sort=False):
        reached = part.dropna(subset=["fraction_needed"])
        if reached.empty:
            r = part.iloc[0]
            lines.append(f"- **{task}**: no pretrained encoder reaches {r.reference} at 100% labels "
                         f"({r.metric} {r.reference_value:.3f}) with fewer labels.")  # fmt: skip
            continue
        r = reached.sort_values("fraction_needed").iloc[0]
        saved = f"{'≥ ' if r.at_smallest else ''}{_pct(1 - r.fraction_needed)} saved"
        lines.append(
            f"- **{task}**: {r.init} ({r.protocol}) reaches the {r.metric} of {r.reference} trained on 100% of the "
            f"labels ({r.reference_value:.3f}) with **{_needed(r)} of the labels** ({saved})."
        )
    return lines


def _figure(name: str) -> list[str]:
    title = Path(name).stem.replace("_", " ")
    return [f"## {title.capitalize()}", "", f"![{title}]({name})", ""]


def _comparison_section(comps: pd.DataFrame, task: str) -> list[str]:
    return [
        f"### {task}: is A better than B? (paired over seeds, {PRIMARY_METRIC[task]})",
        "",
        "Mean difference A − B [95% interval], paired t-test verdict at p < 0.05.",
        "",
        comparison_table(comps, task),
        "",
    ]


def render_markdown(results: pd.DataFrame, config: BaseModel | dict | None = None, figures: list[str] = (),
                    headline_fraction: float | None = None, baselines: tuple[str, ...] = BASELINES) -> str:  # fmt: skip
    fractions = sorted(results.fraction.unique())
    headline = headline_fraction if headline_fraction in fractions else fractions[0]
    fusion = fusion_table(results, headline)
    results = label_settings(results)
    summary = summarise(results)
    counts = results.groupby(["task", "fraction"])["num_labels"].first()
    parts = ["# eossl evaluation report", ""]
    saved = labels_saved_table(summary, baselines)
    if not saved.empty:
        parts += ["## Labels saved", "", *_headlines(saved), ""]
    sizes = "; ".join(
        f"{t} " + ", ".join(f"{_pct(f)} = {int(n)}" for (tt, f), n in counts.items() if tt == t)
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
        parts += [f"## Overview at {_pct(headline)} labels", "", overview, ""]
    if fusion:
        parts += [f"## Modality combinations at {_pct(headline)} labels", "", fusion, ""]
    for figure in (f for f in figures if not f.startswith("prediction_maps")):
        parts += _figure(figure)
    comps = comparisons(results, baselines)
    for task in TASKS:
        metrics = list(results[results.task == task].metric.unique())
        for metric in sorted(metrics, key=lambda m: m != PRIMARY_METRIC[task]):  # primary metric first
            text = table(summary, task, metric, interval=metric == PRIMARY_METRIC[task], baselines=baselines)
            if text:
                parts += [f"## {task}: {metric}", "", text, ""]
            if metric == PRIMARY_METRIC[task] and not comps.empty and task in set(comps.task):
                parts += _comparison_section(comps, task)
    parts += multitask_section(multitask_comparisons(results, baselines))
    if not saved.empty:
        parts += [
            "## Labels needed to match training from scratch on 100%",
            "",
            "| task | init | protocol | reference (100% labels) | fraction needed |",
            "|---|---|---|---|---:|",
        ]
        parts += [f"| {r.task} | {r.init} | {r.protocol} | {r.reference}: {r.reference_value:.3f} | "
                  f"{_needed(r)} |"
                  for r in saved.itertuples()]  # fmt: skip
        parts.append("")
    for figure in (f for f in figures if f.startswith("prediction_maps")):
        parts += _figure(figure)
    if config is not None:
        dumped = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
        parts += ["## Configuration", "", "```yaml", yaml.safe_dump(dumped, sort_keys=False).strip(), "```", ""]
    return "\n".join(parts)


def write_report(results: pd.DataFrame, out: Path, config: BaseModel | dict | None = None,
                 baselines: tuple[str, ...] = BASELINES) -> Path:  # fmt: skip
    """Plots, ``summary.csv``, ``comparisons.csv``, ``report.md`` and a self-contained ``report.html``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fusion_results, results = results, label_settings(results)
    summary = summarise(results)
    figures = [plot_label_efficiency(summary, out / "label_efficiency.png").name]
    curves_path = out / "curves.csv"
    if curves_path.exists():
        curves = pd.read_csv(curves_path)
        figure = plot_convergence(curves, out / "convergence.png")
        figures += [figure.name] if figure else []
    for task in (t for t in TASKS if TASKS[t].dense and t in set(results.task)):
        figure = plot_prediction_maps(out / "predictions", task, out / f"prediction_maps_{task}.png")
        figures += [figure.name] if figure else []
    cfg = config.model_dump() if isinstance(config, BaseModel) else (config or {})
    if cfg.get("external"):
        baselines = (*baselines, cfg["external"]["label"])
    for name, frame in (("summary.csv", summary), ("comparisons.csv", comparisons(results, baselines))):
        write_csv_atomic(frame, out / name)
    path = out / "report.md"
    markdown = render_markdown(fusion_results, config, figures, cfg.get("headline_fraction"), baselines)
    write_text_atomic(path, markdown)
    write_html(path)
    return path
