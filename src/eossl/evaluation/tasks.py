"""Downstream tasks of the evaluation harness: what a head predicts, its loss, metrics and label subsets.

``TASKS`` is the registry. Each task names the batch target it reads (see
:mod:`eossl.data.datamodule`), its primary metric (the one tables, comparisons and "labels saved"
use) and how its label fractions are stratified: by class for single-label tasks, by iterative
stratification on class presence for multi-label classification and segmentation (a mask's classes
are its multi-label target).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import nn

from eossl.config import TaskName
from eossl.evaluation.metrics import (
    multi_label_metrics,
    regression_metrics,
    segmentation_metrics,
    single_label_metrics,
)

TaskKind = Literal["classification", "multilabel", "segmentation", "regression"]


@dataclass(frozen=True)
class Task:
    """One downstream task."""

    name: str
    kind: TaskKind
    target: str  # batch key of the target
    primary: str  # metric used for model selection, tables and comparisons
    metrics: Callable[[torch.Tensor, torch.Tensor, int], dict[str, float]]
    stratify: Literal["label", "multilabel"]
    higher_is_better: bool = True

    @property
    def dense(self) -> bool:
        return self.kind == "segmentation"

    def num_outputs(self, num_classes: int) -> int:
        return 1 if self.kind == "regression" else num_classes

    def loss(self) -> nn.Module:
        return {
            "classification": nn.CrossEntropyLoss(),
            "multilabel": nn.BCEWithLogitsLoss(),
            "segmentation": nn.CrossEntropyLoss(),
            "regression": nn.MSELoss(),
        }[self.kind]

    def prepare_target(self, target: torch.Tensor) -> torch.Tensor:
        return target.float() if self.kind in ("multilabel", "regression") else target.long()

    def prepare_output(self, output: torch.Tensor) -> torch.Tensor:
        return output.squeeze(1) if self.kind == "regression" else output


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("single-label", "classification", "label", "accuracy", single_label_metrics, "label"),
        Task("multi-label", "multilabel", "multilabel", "mAP", multi_label_metrics, "multilabel"),
        Task("segmentation", "segmentation", "mask", "mIoU", segmentation_metrics, "multilabel"),
        Task("regression", "regression", "tree_cover", "r2", regression_metrics, "label"),
    )
}
if set(TASKS) != set(get_args(TaskName)):
    raise RuntimeError("eossl.config.TaskName must list every task of TASKS")
PRIMARY_METRIC = {name: task.primary for name, task in TASKS.items()}


def task_spec(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task '{name}' (known: {', '.join(TASKS)})")
    return TASKS[name]
