"""Figures of an evaluation report: label efficiency, convergence, prediction maps."""

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
from eossl.evaluation.tasks import PRIMARY_METRIC
from eossl.io import atomic_path

LINE_STYLES = {"linear": "-", "knn": ":", "frozen": "-.", "finetune": "--"}
ADAPTER_STYLES = ((0, (5, 1, 1, 1, 1, 1)), (0, (1, 1)), (0, (8, 2)))


def _style(protocol: str, protocols: list[str]) -> str | tuple:
    """One line style per protocol; adapter variants get their own dash patterns."""
    if protocol in LINE_STYLES:
        return LINE_STYLES[protocol]
    others = [p for p in protocols if p not in LINE_STYLES]
    return ADAPTER_STYLES[others.index(protocol) % len(ADAPTER_STYLES)]


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def _tasks(frame: pd.DataFrame) -> list[str]:
    return [t for t in PRIMARY_METRIC if t in set(frame.task)]


def plot_label_efficiency(summary: pd.DataFrame, path: Path) -> Path:
    """Primary metric against label fraction (log axis): one panel per task, colour per init, style per protocol."""
    tasks = _tasks(summary)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 4), squeeze=False)
    colours = {init: f"C{i}" for i, init in enumerate(summary.init.unique())}
    protocols = list(summary.protocol.unique())
    for ax, task in zip(axes[0], tasks, strict=True):
        metric = PRIMARY_METRIC[task]
        part = summary[(summary.task == task) & (summary.metric == metric)]
        for (protocol, init), rows in part.groupby(["protocol", "init"], sort=False):
            rows = rows.sort_values("fraction")
            ax.errorbar(
                rows.fraction * 100, rows["mean"], yerr=rows["std"].fillna(0), linestyle=_style(protocol, protocols),
                marker="o", color=colours[init], capsize=3, label=f"{init} ({protocol})", markersize=4,
            )  # fmt: skip
        ax.set(xscale="log", xlabel="labelled training samples (%)", ylabel=metric, title=task)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_convergence(curves: pd.DataFrame, path: Path) -> Path | None:
    """Validation metric per epoch of the trained protocols at the largest fraction, mean over seeds:
    the "pretrained models converge faster" figure (fine-tuning vs training from scratch)."""
    if curves.empty:
        return None
    tasks = _tasks(curves)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 4), squeeze=False)
    colours = {init: f"C{i}" for i, init in enumerate(curves.init.unique())}
    protocols = list(curves.protocol.unique())
    for ax, task in zip(axes[0], tasks, strict=True):
        part = curves[curves.task == task]
        part = part[part.fraction == part.fraction.max()]
        for (protocol, init), rows in part.groupby(["protocol", "init"], sort=False):
            mean = rows.groupby("step").agg(epoch=("epoch", "mean"), value=("value", "mean")).reset_index()
            label = f"{init} ({protocol})" + (" = from scratch" if (init, protocol) == ("random", "finetune") else "")
            style = _style(protocol, protocols)
            ax.plot(mean.epoch, mean.value, linestyle=style, marker=".", color=colours[init], label=label)
        ax.set(xlabel="epoch", ylabel=f"validation {PRIMARY_METRIC[task]}",
               title=f"{task}, {part.fraction.max() * 100:g}% labels")  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def _rgb(image: torch.Tensor, bands: list[str]) -> np.ndarray:
    picks = [bands.index(b) for b in ("B4", "B3", "B2")] if {"B4", "B3", "B2"} <= set(bands) else [0, 0, 0]
    return stretch(torch.nan_to_num(image[picks].float()).permute(1, 2, 0).numpy())


def plot_prediction_maps(folder: Path, task: str, path: Path) -> Path | None:
    """Rows: test samples; columns: image, truth, then each (protocol, init)'s predicted map."""
    inputs_path = folder / f"{task}-inputs.pt"
    if not inputs_path.exists():
        return None
    inputs = torch.load(inputs_path)
    predictions = {p.stem.removeprefix(f"{task}-"): torch.load(p) for p in sorted(folder.glob(f"{task}-*.pt"))}
    predictions.pop("inputs")
    names = list(inputs["class_names"]) or [str(i) for i in range(int(inputs["truth"].max()) + 1)]
    colours = list(WORLDCOVER_COLOURS[: len(names)]) if len(names) <= len(WORLDCOVER_COLOURS) else None
    cmap = ListedColormap(colours) if colours else "tab20"
    rows, cols = len(inputs["images"]), 2 + len(predictions)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 1.9 * rows + 0.4), squeeze=False)
    for r in range(rows):
        panels = [("image", _rgb(inputs["images"][r], inputs["bands"])), ("truth", inputs["truth"][r])]
        panels += [(name, pred[r]) for name, pred in predictions.items()]
        for c, (title, image) in enumerate(panels):
            ax = axes[r][c]
            kwargs = {} if c == 0 else {"cmap": cmap, "vmin": 0, "vmax": len(names) - 1, "interpolation": "nearest"}
            ax.imshow(np.asarray(image), **kwargs)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=7)
    return _save(fig, path)
