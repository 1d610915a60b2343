"""Weighted cosine kNN on cached frozen features (Wu et al., 2018; as in DINO), per task, fraction and
seed; ``k`` picked on the validation split from ``ks``."""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field

from eossl.evaluation.context import CellScope, InitRun
from eossl.evaluation.protocols._base import Protocol
from eossl.evaluation.protocols._trained_config import ProtocolConfig
from eossl.evaluation.registry import PROTOCOLS
from eossl.evaluation.sink import Cell
from eossl.evaluation.tasks._base import Task
from eossl.models.knn import knn_scores


def _pooled_classes(task: Task) -> bool:
    """kNN votes for classes of pooled tasks."""
    return bool(task.kind.classes and not task.dense)


class KnnProtocolConfig(ProtocolConfig):
    """``knn:``: the neighbour counts tried and the vote temperature."""

    ks: list[int] = Field(default_factory=lambda: [5, 10, 20])
    temperature: float = Field(0.07, gt=0)


@PROTOCOLS.register("knn")
class KnnProtocol(Protocol):
    order = 0
    config: ClassVar = KnnProtocolConfig
    needs_encoder = False

    def logits(
        self, task: Task, bank: torch.Tensor, targets: torch.Tensor, query: torch.Tensor, k: int
    ) -> torch.Tensor:
        """kNN class probabilities turned into logits, so the task's metrics apply unchanged."""
        scores = knn_scores(bank, targets, query, k, self.section.temperature, task.num_classes)
        return task.kind.knn_logits(scores)

    def cells(self, scope: CellScope) -> list[Cell]:
        return scope.cells(self.name, kinds=_pooled_classes)

    def run(self, run: InitRun) -> None:
        feats, ev = run.features(), run.evaluation
        for task, fraction, seed, subset in run.runs(self.name, kinds=_pooled_classes):
            bank, targets = feats["train"][subset], ev.target("train", task)[subset]
            val = {
                k: task.metrics(self.logits(task, bank, targets, feats["val"], k), ev.target("val", task))[task.primary]
                for k in self.section.ks
            }
            best_k = max(val, key=val.get)
            test = task.metrics(self.logits(task, bank, targets, feats["test"], best_k), ev.target("test", task))
            ev.sink.add(
                run.key(self.name, task, fraction, seed), test, encoder=run.encoder_name, num_labels=len(subset),
                trainable_params=0, head_params=0, k=best_k,
            )  # fmt: skip
