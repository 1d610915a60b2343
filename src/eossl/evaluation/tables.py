"""The report's tables and comparisons, from results or their summary.

Which metric is a task's primary one, whether higher is better and the order of tasks come from each
row's task kind (the ``kind`` column, :data:`eossl.evaluation.registry.TASK_KINDS`; frames without
one read as ``kind = task``); protocol order from :func:`eossl.evaluation.registry.protocol_rank`,
baselines from :func:`eossl.evaluation.registry.baseline_inits` (``baselines=None``). Everything
here is re-exported by :mod:`eossl.evaluation.report`.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from eossl.evaluation.registry import baseline_inits, protocol_rank
from eossl.evaluation.results import higher_is_better, ordered_tasks, primary_metric, task_kinds
from eossl.evaluation.statistics import mean_interval, paired_comparison

SETTING_SEPARATOR = " · "
LOWER_IS_BETTER = {"rmse", "mae"}
VERDICT_MARKS = {"A better": "better", "B better": "worse", "no significant difference": "n.s."}


def base_init(init: str) -> str:
    """``"random (run-a)"`` -> ``"random"``: inits merged from several runs carry the run's name, and
    inits of a run over several modality settings carry the setting (``"random · s2+s1 late-concat"``)."""
    return init.split(SETTING_SEPARATOR)[0].split(" (")[0]


def setting_of(init: str) -> str:
    """The modality setting an init label carries (empty when the run had one setting)."""
    return init.split(SETTING_SEPARATOR, 1)[1] if SETTING_SEPARATOR in init else ""


def setting_names(results: pd.DataFrame) -> pd.Series:
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
    names = setting_names(results)
    if names.nunique() <= 1:
        return results
    return results.assign(init=results.init + SETTING_SEPARATOR + names)


def resolve_baselines(baselines: tuple[str, ...] | None) -> tuple[str, ...]:
    """``baselines``, or the registry's baseline inits (:func:`baseline_inits`) when None."""
    return baseline_inits() if baselines is None else tuple(baselines)


def is_baseline(init: str, baselines: tuple[str, ...] | None = None) -> bool:
    return base_init(init) in resolve_baselines(baselines)


def ordered(frame: pd.DataFrame, baselines: tuple[str, ...] | None) -> pd.DataFrame:
    """Report order: protocols by :func:`protocol_rank`, pretrained inits before baselines (stable otherwise)."""
    baselines = resolve_baselines(baselines)
    keys = frame.assign(
        _rank=frame.protocol.map(protocol_rank), _base=frame.init.map(lambda i: is_baseline(i, baselines))
    )
    return keys.sort_values(["_rank", "protocol", "_base"], kind="stable").drop(columns=["_rank", "_base"])


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, std, count and 95% interval over seeds per task, metric, protocol, init and fraction (with
    each task's ``kind``); ``unconverged``: how many of the seeds' runs had not converged in their budget."""
    keys = ["task", "metric", "protocol", "init", "fraction"]
    kinds = task_kinds(results)
    rows = []
    for key, part in results.groupby(keys, sort=False):
        interval = mean_interval(part["value"].to_numpy())
        unconverged = int(part["converged"].astype(str).str.lower().eq("false").sum()) if "converged" in part else 0
        rows.append(dict(zip(keys, key, strict=True), kind=kinds[key[0]], mean=interval.mean, std=interval.std,
                         count=interval.n, ci_low=interval.low, ci_high=interval.high,
                         unconverged=unconverged))  # fmt: skip
    return pd.DataFrame(rows, columns=["task", "kind", *keys[1:], "mean", "std", "count", "ci_low", "ci_high",
                                       "unconverged"])  # fmt: skip


def pct(f: float) -> str:
    return f"{f * 100:.3g}%"


def _params(n: float) -> str:
    n = int(n)
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}K" if n >= 1e3 else str(n)


def _best(values: pd.Series, metric: str) -> float:
    return values.min() if metric in LOWER_IS_BETTER else values.max()


def primary_metrics(frame: pd.DataFrame) -> dict[str, str | None]:
    """``task -> primary metric`` of the tasks in ``frame`` (None for a task of an unknown kind)."""
    return {task: primary_metric(kind) for task, kind in task_kinds(frame).items()}


def primary_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of each task's primary metric."""
    return frame[frame.metric == frame.task.map(primary_metrics(frame))]


def grid(
    part: pd.DataFrame,
    column_key: str,
    columns: list,
    header: list[str],
    cell: Callable[[pd.Series], str],
    baselines: tuple[str, ...] | None,
    row_label: Callable[[str, str], str] = lambda protocol, init: protocol,
    empty: str = "",
) -> str:
    """Markdown table of ``part``: one row per (protocol, init) in report order, one column per value of
    ``column_key`` in ``columns``, cells drawn by ``cell`` from that row of ``part``."""
    lines = [f"| {' | '.join(header)} |", "|---|---|" + "---:|" * len(columns)]
    for (protocol, init), rows in ordered(part, baselines).groupby(["protocol", "init"], sort=False):
        by_column = {key: group.iloc[0] for key, group in rows.groupby(column_key)}
        cells = [cell(by_column[c]) if c in by_column else empty for c in columns]
        lines.append(f"| {row_label(protocol, init)} | {init} | {' | '.join(cells)} |")
    return "\n".join(lines)


def mean_std(r: pd.Series | dict, bold: bool) -> str:
    text = f"{r['mean']:.3f} ± {0 if pd.isna(r['std']) else r['std']:.3f}"
    return f"**{text}**" if bold else text


def table(summary: pd.DataFrame, task: str, metric: str, interval: bool = False,
          baselines: tuple[str, ...] | None = None) -> str:  # fmt: skip
    """Markdown table: rows protocol/init, columns label fractions, cells mean ± std (best in bold; † where
    some seed's run had not converged in its budget)."""
    part = summary[(summary.task == task) & (summary.metric == metric)]
    if part.empty:
        return ""
    fractions = sorted(part.fraction.unique())
    best = part.groupby("fraction")["mean"].agg(lambda v: _best(v, metric))

    def cell(r: pd.Series) -> str:
        ci = f" [{r.ci_low:.3f}, {r.ci_high:.3f}]" if interval and r["count"] > 1 else ""
        mark = " †" if r.get("unconverged", 0) > 0 else ""  # some seed had not converged in its budget
        return mean_std(r, r["mean"] == best[r.fraction]) + ci + mark

    header = ["protocol", "init", *(pct(f) for f in fractions)]
    return grid(part, "fraction", fractions, header, cell, baselines)


def overview_table(summary: pd.DataFrame, results: pd.DataFrame, fraction: float,
                   baselines: tuple[str, ...] | None = None) -> str:  # fmt: skip
    """SpectralEarth-style table at one label fraction: rows protocol (trainable encoder parameters) x
    init, columns the tasks' primary metrics (mean ± std), best per column in bold."""
    part = primary_rows(summary[summary.fraction.round(9) == round(fraction, 9)])
    if part.empty:
        return ""
    kinds, metrics = task_kinds(part), primary_metrics(part)
    tasks = ordered_tasks(part, kinds)
    params = results.groupby(["protocol", "init"])["trainable_params"].max()
    means = part.groupby("task")["mean"]
    best = {t: means.get_group(t).max() if higher_is_better(kinds[t]) else means.get_group(t).min() for t in tasks}

    def row_label(protocol: str, init: str) -> str:
        n = params.get((protocol, init))
        return f"{protocol} ({_params(n) if pd.notna(n) else '?'})"

    def cell(r: pd.Series) -> str:
        return mean_std(r, r["mean"] == best[r.task])

    header = ["protocol (trainable encoder params)", "init", *(f"{t} ({metrics[t]})" for t in tasks)]
    return grid(part, "task", tasks, header, cell, baselines, row_label, empty="–")


def comparisons(results: pd.DataFrame, baselines: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Every pretrained init against every baseline of the same protocol, task (primary metric) and
    fraction, paired over seeds: mean difference, its 95% interval, p-value and verdict."""
    baselines = resolve_baselines(baselines)
    rows = []
    primary = primary_rows(results).assign(_setting=lambda f: f.init.map(setting_of))
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

    def cell(r: pd.Series) -> str:
        if r.n > 1 and r.low == r.high:  # e.g. 100% labels: one subset, a deterministic probe
            return f"{r.difference:+.3f} {VERDICT_MARKS[r.verdict]} (same on every seed)"
        return f"{r.difference:+.3f} [{r.low:+.3f}, {r.high:+.3f}] {VERDICT_MARKS[r.verdict]} (p={r.p_value:.2g})"

    pairs = part.assign(init=part.a + " vs " + part.b)
    header = ["protocol", "A vs B", *(pct(f) for f in fractions)]
    return grid(pairs, "fraction", fractions, header, cell, ())


def fusion_table(results: pd.DataFrame, fraction: float, baselines: tuple[str, ...] | None = None) -> str:
    """ben-ge-style fusion table at one label fraction: one block per init and protocol, rows the
    modality settings (combination, fusion mode, missing modality), columns each task's primary metric
    (mean ± std over seeds), best per column and block in bold. Empty when there is one setting."""
    part = primary_rows(results[results.fraction.round(9) == round(fraction, 9)])
    if part.empty or setting_names(part).nunique() <= 1:
        return ""
    part = part.assign(init=part.init.map(base_init), setting=setting_names(part))
    kinds, metrics = task_kinds(part), primary_metrics(part)
    tasks = ordered_tasks(part, kinds)
    header = ["init", "protocol", "modalities", *(f"{t} ({metrics[t]})" for t in tasks)]
    lines = [f"| {' | '.join(header)} |", "|---|---|---|" + "---:|" * len(tasks)]
    for (init, protocol), block in ordered(part, baselines).groupby(["init", "protocol"], sort=False):
        stats = block.groupby(["setting", "task"], sort=False)["value"].agg(["mean", "std"])
        means = stats.groupby("task")["mean"]
        best = {t: m.max() if higher_is_better(kinds[t]) else m.min() for t, m in means}
        for setting in block.setting.unique():
            cells = []
            for t in tasks:
                if (setting, t) in stats.index:
                    r = stats.loc[(setting, t)]
                    cells.append(mean_std(r, r["mean"] == best[t]))
                else:
                    cells.append("–")
            lines.append(f"| {init} | {protocol} | {setting} | {' | '.join(cells)} |")
    return "\n".join(lines)


def multitask_reference(protocol: str) -> str:
    """The single-task protocol a multi-task one is compared with: ``frozen`` for ``multitask-frozen-*``
    (heads on a frozen encoder), else ``finetune`` (full fine-tuning)."""
    return "frozen" if protocol.startswith("multitask-frozen") else "finetune"


def multitask_comparisons(results: pd.DataFrame, baselines: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Every multi-task protocol against its single-task reference (:func:`multitask_reference`) per init,
    task (primary metric) and fraction, paired over the seeds both have: means and stds of each, mean
    difference multi − single with its 95% interval, paired t-test p-value and verdict."""
    baselines = resolve_baselines(baselines)
    kinds = task_kinds(results)
    rows = []
    primary = primary_rows(results)
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
            if not higher_is_better(kinds[task]):  # a lower value is the better one
                verdict = {"A better": "B better", "B better": "A better"}.get(verdict, verdict)
            rows.append({"protocol": protocol, "reference": reference, "init": init, "task": task,
                         "metric": primary_metric(kinds[task]), "fraction": fraction, "single_mean": single.mean,
                         "single_std": single.std, "multi_mean": multi.mean, "multi_std": multi.std,
                         "difference": c.difference.mean, "low": c.difference.low, "high": c.difference.high,
                         "p_value": c.p_value, "n": c.n, "verdict": verdict})  # fmt: skip
    columns = ["protocol", "reference", "init", "task", "metric", "fraction", "single_mean", "single_std",
               "multi_mean", "multi_std", "difference", "low", "high", "p_value", "n", "verdict"]  # fmt: skip
    frame = pd.DataFrame(rows, columns=columns)
    if frame.empty:
        return frame
    task_rank = {task: i for i, task in enumerate(ordered_tasks(results, kinds))}
    order = frame.assign(_base=frame.init.map(lambda i: is_baseline(i, baselines)), _task=frame.task.map(task_rank))
    return order.sort_values(["protocol", "_base", "init", "_task", "fraction"], kind="stable").drop(
        columns=["_base", "_task"]
    )


def multitask_section(comps: pd.DataFrame) -> list[str]:
    """Markdown lines of the "Multi-task vs single-task" section (none without multi-task comparisons)."""
    if comps.empty:
        return []
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
            single = mean_std({"mean": r.single_mean, "std": r.single_std}, False)
            multi = mean_std({"mean": r.multi_mean, "std": r.multi_std}, False)
            difference = f"{r.difference:+.3f} [{r.low:+.3f}, {r.high:+.3f}] {VERDICT_MARKS[r.verdict]}"
            parts.append(f"| {r.init} | {r.task} ({r.metric}) | {pct(r.fraction)} | {single} | {multi} | "
                         f"{difference} | {r.p_value:.2g} |")  # fmt: skip
        parts.append("")
    return parts
