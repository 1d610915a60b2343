"""Linear probe on cached frozen features: logistic (ridge) regression per task, fraction and seed,
weight decay picked on the validation split (:mod:`eossl.evaluation.linear_probe`)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from eossl.evaluation.context import CellScope, InitRun
from eossl.evaluation.linear_probe import fit_linear
from eossl.evaluation.protocols._base import Protocol
from eossl.evaluation.protocols._trained_config import ProtocolConfig
from eossl.evaluation.registry import PROTOCOLS
from eossl.evaluation.sink import Cell
from eossl.evaluation.tasks._base import Task


def _linear_kinds(task: Task) -> bool:
    """Task kinds a linear probe fits (those that declare a linear model)."""
    return task.kind.linear is not None


class LinearProtocolConfig(ProtocolConfig):
    """``linear:``: the weight decays tried and L-BFGS iterations per fit."""

    weight_decays: list[float] = Field(default_factory=lambda: [1e-4, 1e-3, 1e-2, 1e-1])
    max_iter: int = 200


@PROTOCOLS.register("linear")
class LinearProtocol(Protocol):
    order = 1
    config: ClassVar = LinearProtocolConfig
    needs_encoder = False

    def cells(self, scope: CellScope) -> list[Cell]:
        return scope.cells(self.name, kinds=_linear_kinds)

    def run(self, run: InitRun) -> None:
        feats, ev = run.features(), run.evaluation
        for task, fraction, seed, subset in run.runs(self.name, kinds=_linear_kinds):
            train_y, val_y = ev.target("train", task), ev.target("val", task)
            best_score, best = -np.inf, None
            for wd in self.section.weight_decays:
                probe = fit_linear(feats["train"][subset], train_y[subset], task.kind.linear, wd, self.section.max_iter)
                value = task.metrics(probe.logits(feats["val"]), val_y)
                score = value[task.primary] if task.higher_is_better else -value[task.primary]
                if score > best_score:
                    best_score, best = score, probe
            test = task.metrics(best.logits(feats["test"]), ev.target("test", task))
            ev.sink.add(
                run.key(self.name, task, fraction, seed), test, encoder=run.encoder_name, num_labels=len(subset),
                trainable_params=0, head_params=sum(p.numel() for p in best.layer.parameters()),
                weight_decay=best.weight_decay,
            )  # fmt: skip
