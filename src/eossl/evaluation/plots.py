"""Figures of an evaluation report: label efficiency, convergence, prediction maps.

Panels follow the report's task order and show each task's primary metric, both from the task's kind
(the ``kind`` column of results and summaries; curves join on task through ``kinds``). Saved maps are
read with ``torch.load(weights_only=True)``: tensors, lists and strings only, nothing unpickled.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.colors import ListedColormap

from eossl.data.plotting import WORLDCOVER_COLOURS, stretch
from eossl.evaluation.results import ordered_tasks, primary_metric, task_kinds
from eossl.io import atomic_path

LINE_STYLES = {"linear": "-", "knn": ":", "frozen": "-.", "finetune": "--"}
ADAPTER_STYLES = ((0, (5, 1, 1, 1, 1, 1)), (0, (1, 1)), (0, (8, 2)))


def _style(protocol: str, protocols: list[str]) -> str | tuple:
    """One line style per protocol; adapter variants get their own dash patterns."""
    if protocol in LINE_STYLES:
        return LINE_STYLES[protocol]
    others = [p for p in protocols if p not in LINE_STYLES]
    return ADAPTER_STYLES[others.index(protocol) % len(ADAPTER_STYLES)]


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Lay out ``fig``, write it to ``path`` as PNG atomically and close it."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def _tasks(frame: pd.DataFrame, kinds: dict[str, str]) -> list[tuple[str, str]]:
    """``(task, primary metric)`` in report order, for the tasks of ``frame`` of a known kind."""
    tasks = [(t, primary_metric(kinds.get(t, t))) for t in ordered_tasks(frame, kinds)]
    return [(t, m) for t, m in tasks if m is not None]


def _panels(count: int) -> tuple[plt.Figure, list[plt.Axes]]:
    fig, axes = plt.subplots(1, max(count, 1), figsize=(5.2 * max(count, 1), 4), squeeze=False)
    return fig, list(axes[0])


def fraction_axis(ax: plt.Axes, fractions: list[float], counts: dict[float, int] | None = None) -> None:
    """A log axis of label fractions in percent, ticked at the measured fractions as ``10%`` (or
    ``10%\n(700)`` with the labelled-sample counts), not ``10^1``."""
    from matplotlib.ticker import NullFormatter, NullLocator

    fractions = sorted(fractions)
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks([f * 100 for f in fractions])
    labels = [f"{f * 100:.3g}%" + (f"\n({counts[f]:,})" if counts and f in counts else "") for f in fractions]
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_xlabel("labelled training samples" + (" (% of the training split, count)" if counts else " (%)"))


def plot_label_efficiency(summary: pd.DataFrame, path: Path, counts: dict[float, int] | None = None) -> Path:
    """Primary metric against label fraction (log axis in percent, ``counts``: labelled samples per
    fraction under the ticks): one panel per task, colour per init, style per protocol."""
    tasks = _tasks(summary, task_kinds(summary))
    fig, axes = _panels(len(tasks))
    colours = {init: f"C{i}" for i, init in enumerate(summary.init.unique())}
    protocols = list(summary.protocol.unique())
    for ax, (task, metric) in zip(axes, tasks, strict=False):
        part = summary[(summary.task == task) & (summary.metric == metric)]
        for (protocol, init), rows in part.groupby(["protocol", "init"], sort=False):
            rows = rows.sort_values("fraction")
            ax.errorbar(
                rows.fraction * 100, rows["mean"], yerr=rows["std"].fillna(0), linestyle=_style(protocol, protocols),
                marker="o", color=colours[init], capsize=3, label=f"{init} ({protocol})", markersize=4,
            )  # fmt: skip
        ax.set(ylabel=metric, title=task)
        fraction_axis(ax, list(part.fraction.unique()), counts)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def _stops(results: pd.DataFrame | None, task: str, fraction: float) -> pd.DataFrame:
    """Where the runs of ``task`` at ``fraction`` ended: per protocol and init, the mean last step and
    whether every seed stopped early (``early``), none did (``budget``) or some did (``mixed``)."""
    columns = ["protocol", "init", "steps", "why"]
    if results is None or "stopped" not in results or results.empty:
        return pd.DataFrame(columns=columns)
    part = results[(results.task == task) & (results.fraction == fraction) & results.stopped.notna()]
    part = part.drop_duplicates(["protocol", "init", "seed"])
    rows = []
    for (protocol, init), runs in part.groupby(["protocol", "init"], sort=False):
        early = runs.stopped.astype(str).eq("early")
        why = "early" if early.all() else "budget" if not early.any() else "mixed"
        rows.append({"protocol": protocol, "init": init, "steps": runs.steps.astype(float).mean(), "why": why})
    return pd.DataFrame(rows, columns=columns)


STOP_MARKERS = {"early": ("X", "stopped early: no validation gain for `patience` rounds"),
                "budget": ("s", "ran its whole budget"), "mixed": ("D", "some seeds stopped early")}  # fmt: skip


def plot_convergence(curves: pd.DataFrame, path: Path, kinds: dict[str, str] | None = None,
                     results: pd.DataFrame | None = None) -> Path | None:  # fmt: skip
    """Validation metric per epoch of the trained protocols at the largest fraction, mean over seeds:
    the "pretrained models converge faster" figure (fine-tuning vs training from scratch). With
    ``results`` (schema 5) each curve ends in a marker saying why its runs stopped (early stopping, the
    budget, or a mix over seeds). ``kinds``: ``task -> kind`` from the results (curves have no kind
    column; default ``kind = task``)."""
    if curves.empty:
        return None
    tasks = _tasks(curves, kinds or {})
    if not tasks:
        return None
    fig, axes = _panels(len(tasks))
    colours = {init: f"C{i}" for i, init in enumerate(curves.init.unique())}
    protocols = list(curves.protocol.unique())
    for ax, (task, metric) in zip(axes, tasks, strict=True):
        part = curves[curves.task == task]
        part = part[part.fraction == part.fraction.max()]
        for (protocol, init), rows in part.groupby(["protocol", "init"], sort=False):
            mean = rows.groupby("step").agg(epoch=("epoch", "mean"), value=("value", "mean")).reset_index()
            label = f"{init} ({protocol})" + (" = from scratch" if (init, protocol) == ("random", "finetune") else "")
            style = _style(protocol, protocols)
            ax.plot(mean.epoch, mean.value, linestyle=style, marker=".", color=colours[init], label=label)
        stops = _stops(results, task, part.fraction.max())
        for stop in stops.itertuples():
            rows = part[(part.protocol == stop.protocol) & (part.init == stop.init)]
            if rows.empty:
                continue
            mean = rows.groupby("step").agg(epoch=("epoch", "mean"), value=("value", "mean")).reset_index()
            last = mean.iloc[(mean.step - stop.steps).abs().argmin()]
            ax.plot(last.epoch, last.value, marker=STOP_MARKERS[stop.why][0], markersize=9, color=colours[stop.init],
                    markeredgecolor="black", linestyle="none")  # fmt: skip
        shown = set(stops.why)
        for why in (w for w in STOP_MARKERS if w in shown):
            ax.plot([], [], marker=STOP_MARKERS[why][0], color="grey", markeredgecolor="black", linestyle="none",
                    label=STOP_MARKERS[why][1])  # fmt: skip
        ax.set(xlabel="epoch", ylabel=f"validation {metric}",
               title=f"{task}, {part.fraction.max() * 100:g}% labels")  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def _rgb(image: torch.Tensor, bands: list[str]) -> np.ndarray:
    """A stretched true-colour view of ``image``: B4/B3/B2 (a modality prefix such as ``s2:`` allowed), else band 0."""
    plain = [b.rpartition(":")[2] for b in bands]
    picks = [plain.index(b) for b in ("B4", "B3", "B2")] if {"B4", "B3", "B2"} <= set(plain) else [0, 0, 0]
    return stretch(torch.nan_to_num(image[picks].float()).permute(1, 2, 0).numpy())


def _dates(image: torch.Tensor, bands: list[str], dates: int) -> list[tuple[str, np.ndarray]]:
    """One RGB panel per date of a stacked multi-date input (one panel for a single date)."""
    if dates <= 1:
        return [("image", _rgb(image, bands))]
    per_date = len(bands) // dates
    return [(f"date {d + 1}", _rgb(image[d * per_date : (d + 1) * per_date], bands[d * per_date : (d + 1) * per_date]))
            for d in range(dates)]  # fmt: skip


CHANGE_COLOURS = ("#262626", "#f5b800")  # no change, change
ERROR_COLOURS = {"correct": (0.85, 0.85, 0.85), "wrong": (0.84, 0.15, 0.16), "ignored": (0.0, 0.0, 0.0),
                 "missed": (0.12, 0.47, 0.71), "hit": (1.0, 1.0, 1.0)}  # fmt: skip


def error_map(predicted: np.ndarray, truth: np.ndarray, binary: bool, ignore: int = 255) -> np.ndarray:
    """An RGB map of where ``predicted`` is wrong: classes grey where right and red where wrong; binary
    (change) maps white for hits, red for false alarms, blue for misses; unlabelled pixels (``ignore``
    or negative) black."""
    labelled = (truth >= 0) & (truth != ignore)
    right, wrong = labelled & (predicted == truth), labelled & (predicted != truth)
    cases = {"correct": right, "wrong": wrong}
    if binary:
        cases = {"correct": right & (truth == 0), "hit": right & (truth == 1), "wrong": wrong & (truth == 0),
                 "missed": wrong & (truth == 1)}  # fmt: skip
    out = np.empty((*truth.shape, 3))
    out[:] = ERROR_COLOURS["ignored"]
    for case, where in cases.items():
        out[where] = ERROR_COLOURS[case]
    return out


def _abs_error(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.abs(predicted.astype(np.float64) - truth.astype(np.float64))


def _load(path: Path) -> object:
    """A saved map or inputs dict; ``weights_only``: tensors and plain containers, never arbitrary objects."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _map(image: object) -> np.ndarray:
    """A [H, W] array of a map saved as [H, W] or [1, H, W]."""
    array = np.asarray(image)
    return array[0] if array.ndim == 3 and array.shape[0] == 1 else array


def _prediction_files(folder: Path, task: str) -> list[Path]:
    """``TASK-PROTOCOL-INIT.pt`` of ``task``, not those of another task whose name starts with ``TASK-``."""
    others = {p.name.removesuffix("-inputs.pt") for p in folder.glob("*-inputs.pt")} - {task}
    longer = [f"{o}-" for o in others if o.startswith(f"{task}-")]
    return [p for p in sorted(folder.glob(f"{task}-*.pt")) if p.name != f"{task}-inputs.pt"
            and not any(p.name.startswith(prefix) for prefix in longer)]  # fmt: skip


def plot_prediction_maps(folder: Path, task: str, path: Path) -> Path | None:
    """Rows: test samples; columns: the image (each date for change detection), the truth, then for each
    (protocol, init) its predicted map and its errors (classes in the store's class colours, errors red,
    change misses blue; continuous maps on one shared colour scale, errors as absolute differences)."""
    inputs_path = folder / f"{task}-inputs.pt"
    if not inputs_path.exists():
        return None
    inputs = _load(inputs_path)
    predictions = {p.stem.removeprefix(f"{task}-"): _load(p) for p in _prediction_files(folder, task)}
    truth = torch.as_tensor(inputs["truth"])
    continuous = truth.is_floating_point()
    if continuous:
        finite = truth[torch.isfinite(truth)]
        low, high = (float(finite.min()), float(finite.max())) if finite.numel() else (0.0, 1.0)
        style = {"cmap": "viridis", "vmin": low, "vmax": high, "interpolation": "nearest"}
        error_style = {"cmap": "magma", "vmin": 0, "vmax": max(high - low, 1e-6), "interpolation": "nearest"}
    else:
        names = list(inputs["class_names"]) or [str(i) for i in range(int(truth.max()) + 1)]
        colours = list(WORLDCOVER_COLOURS[: len(names)]) if len(names) <= len(WORLDCOVER_COLOURS) else None
        if int(inputs.get("dates", 1)) > 1:
            colours = list(CHANGE_COLOURS)  # change maps: dark where nothing changed, bright where it did
        cmap = ListedColormap(colours) if colours else "tab20"
        style = {"cmap": cmap, "vmin": 0, "vmax": len(names) - 1, "interpolation": "nearest"}
        error_style = {"interpolation": "nearest"}
    dates = int(inputs.get("dates", 1))
    binary = not continuous and dates > 1
    rows, cols = len(inputs["images"]), max(dates, 1) + 1 + 2 * len(predictions)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 1.9 * rows + 0.4), squeeze=False)
    for r in range(rows):
        images = _dates(inputs["images"][r], list(inputs["bands"]), dates)
        panels = [(title, image, {}) for title, image in images] + [("truth", _map(truth[r]), style)]
        for name, pred in predictions.items():
            predicted, expected = _map(pred[r]), _map(truth[r])
            errors = _abs_error(predicted, expected) if continuous else error_map(predicted, expected, binary)
            panels += [(name, predicted, style), ("errors", errors, error_style)]
        for c, (title, image, panel_style) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(image, **panel_style)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=7)
    return save_figure(fig, path)
