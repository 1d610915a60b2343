"""Where results go: rows of ``results.csv``, learning curves of ``curves.csv``, the run's
``summary.json`` and prediction maps, written atomically after every cell (:class:`Cell`) so an
interrupted evaluation keeps what it measured and can resume after it (:mod:`eossl.evaluation.resume`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from eossl.evaluation.features import save_atomic
from eossl.evaluation.results import CURVE_COLUMNS, RESULT_COLUMNS, SCHEMA_VERSION, write_csv_atomic
from eossl.evaluation.tasks._base import Task
from eossl.io import write_text_atomic

CELL_COLUMNS = ["init", "protocol", "task", "fraction", "seed", "modality", "fusion"]
"""The columns of ``results.csv`` (and ``curves.csv``) that name a row's :class:`Cell`."""


@dataclass(frozen=True)
class Cell:
    """The unit an evaluation measures, writes and resumes by: one init (as reported), protocol, task,
    label fraction and seed on one modality setting (``modality``, ``fusion``: as in ``results.csv``)."""

    init: str
    protocol: str
    task: str
    fraction: float
    seed: int
    modality: str
    fusion: str


@dataclass(frozen=True)
class RunKey:
    """One measured run: init (as reported), protocol, task, label fraction and seed."""

    init: str
    protocol: str
    task: Task
    fraction: float
    seed: int


@dataclass(frozen=True)
class Setting:
    """A modality combination and how it is fused (``none`` for a single modality); ``pair``: the store
    pair whose two dates the combination is (change detection), else None."""

    combo: tuple[str, ...]
    fusion: str = "none"
    pair: str | None = None

    @property
    def name(self) -> str:
        """The input's name: the modality, or the modalities joined by ``+``."""
        return "+".join(self.combo)

    @property
    def label(self) -> str:
        return self.name + ("" if self.fusion == "none" else f" {self.fusion}")


class ResultSink:
    """Collects result rows and curves of one evaluation and writes them into ``out``."""

    def __init__(self, out: Path, prediction_maps: int, first_seed: int) -> None:
        self.out, self.prediction_maps, self.first_seed = Path(out), prediction_maps, first_seed
        self.rows: list[dict[str, Any]] = []
        self.curves: list[dict[str, Any]] = []
        self.setting = Setting(())

    def add(self, key: RunKey, metrics: dict[str, float], missing: str = "", **extra: Any) -> None:
        """One row per metric of ``key``'s run on the test split (``missing``: a modality blanked)."""
        for metric, value in metrics.items():
            self.rows.append({
                "init": key.init, "protocol": key.protocol, "task": key.task.name, "kind": key.task.kind.name,
                "fraction": key.fraction, "seed": key.seed, "metric": metric, "value": value,
                "modality": self.setting.name, "fusion": self.setting.fusion, "missing": missing,
                "schema_version": SCHEMA_VERSION, **extra,
            })  # fmt: skip

    def curve(self, key: RunKey, points: list[dict[str, Any]]) -> None:
        for point in points:
            self.curves.append(
                {"init": key.init, "protocol": key.protocol, "task": key.task.name, "fraction": key.fraction,
                 "seed": key.seed, "metric": key.task.primary, **point, "modality": self.setting.name,
                 "fusion": self.setting.fusion}
            )  # fmt: skip

    def wants_maps(self, key: RunKey, last_fraction: float) -> bool:
        """Dense tasks keep prediction maps of their first seed at the largest fraction."""
        return bool(self.prediction_maps) and key.task.dense and key.seed == self.first_seed and (
            key.fraction == last_fraction)  # fmt: skip

    def save_maps(self, key: RunKey, inputs: dict[str, Any], outputs: torch.Tensor) -> None:
        """Prediction maps of the picked test samples (and, rewritten each time, their inputs and truth)."""
        folder = self.out / "predictions"
        save_atomic(inputs, folder / f"{key.task.name}-inputs.pt")  # rewritten: a rerun must not show stale maps
        predicted = outputs.argmax(1).to(torch.uint8) if key.task.kind.classes else outputs.float()
        fused = "" if self.setting.fusion == "none" else f"-{self.setting.fusion}"  # change: one map per fusion
        save_atomic(predicted, folder / f"{key.task.name}-{key.protocol}-{key.init}{fused}.pt")

    def results(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=RESULT_COLUMNS)

    def flush(self, summary: dict[str, Any] | None = None) -> None:
        """Write ``curves.csv``, then ``results.csv`` (the record of which cells are done, so it never
        names a cell whose curves are not written), then ``summary`` as ``summary.json`` if given."""
        write_csv_atomic(pd.DataFrame(self.curves, columns=CURVE_COLUMNS), self.out / "curves.csv")
        write_csv_atomic(self.results(), self.out / "results.csv")
        if summary is not None:
            write_text_atomic(self.out / "summary.json", json.dumps(summary, indent=2) + "\n")


def map_picks(table: pd.DataFrame, test: np.ndarray, count: int, group: str | None) -> np.ndarray:
    """Positions (within the test split) of ``count`` test samples from distinct places."""
    places = table[group].to_numpy()[test] if group and group in table else test
    return np.sort(np.unique(places, return_index=True)[1])[:count]
