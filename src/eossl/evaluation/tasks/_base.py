"""A task kind (what a head predicts for a declared target kind) and a task (one declared target of
the store evaluated as that kind).

A :class:`TaskKind` gives the loss, the metrics and the primary metric (the one tables, comparisons
and "labels saved" use), how targets and outputs are shaped, and how label fractions are stratified:
``class`` (stratified by class, :func:`eossl.data.splits.label_fraction`), ``presence`` (iterative
stratification on class presence, :func:`eossl.data.splits.multilabel_fraction`), ``places`` (a
fraction of the training places with all their samples, stratified by whether a place holds class 1:
change detection). A target names the target whose values stratify it (``Target.strata``; default
itself; ``places`` kinds always use their own target). ``pairs``: the kind takes two dates of a place
(a store pair's modalities), and only them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from eossl.data.targets import Target


@dataclass(frozen=True)
class DenseOptions:
    """How dense tasks are learned and scored (the evaluation's ``dense:`` section): ``decoder`` (a name of
    :data:`eossl.models.decoders.DECODERS`; ``auto``: UNet on CNNs, UpConv on ViTs), the boundary weight
    of the cross-entropy (1: plain cross-entropy) on pixels within ``boundary_distance`` pixels of a class
    boundary, and the ``boundary_tolerance`` (pixels) of the boundary F1 score."""

    decoder: str = "auto"
    boundary_weight: float = 1.0
    boundary_distance: int = 2
    boundary_tolerance: int = 2


class TaskKind:
    """One kind of downstream task; subclasses register in ``TASK_KINDS`` under a target kind. An instance
    carries the evaluation's :class:`DenseOptions` (used by dense kinds)."""

    name: ClassVar[str]
    order: ClassVar[int] = 50  # report order
    primary: ClassVar[str]
    higher_is_better: ClassVar[bool] = True
    dense: ClassVar[bool] = False  # per-pixel outputs (a decoder) instead of pooled ones (a linear head)
    classes: ClassVar[bool] = True  # targets are classes (kNN votes apply)
    linear: ClassVar[Literal["classification", "multilabel", "regression"] | None] = None  # linear-probe kind
    stratify: ClassVar[Literal["class", "presence", "bins", "places"]] = "class"  # label fractions of this kind
    pairs: ClassVar[bool] = False  # inputs are two dates of a place (a store pair), e.g. change detection

    def __init__(self, options: DenseOptions | None = None) -> None:
        self.options = options or DenseOptions()

    def loss(self, ignore_index: int | None = None) -> nn.Module:
        """The training loss; ``ignore_index``: the target value that means "no label" (dense kinds)."""
        raise NotImplementedError

    def metrics(
        self, outputs: torch.Tensor, targets: torch.Tensor, num_classes: int, ignore_index: int | None = None
    ) -> dict[str, float]:
        raise NotImplementedError

    def num_outputs(self, num_classes: int) -> int:
        return num_classes

    def prepare_target(self, target: torch.Tensor) -> torch.Tensor:
        return target.long()

    def prepare_output(self, output: torch.Tensor) -> torch.Tensor:
        return output

    def knn_logits(self, scores: torch.Tensor) -> torch.Tensor:
        """kNN class scores turned into logits, so this kind's metrics apply unchanged."""
        return scores.clamp(1e-6, 1 - 1e-6).log()


@dataclass(frozen=True)
class Task:
    """A task of an evaluation: ``name`` as requested (a target name or a kind name), its ``kind`` and
    the store's declared ``target``; ``num_classes`` from the declaration (or the data)."""

    name: str
    kind: TaskKind
    target: Target
    num_classes: int

    @property
    def dense(self) -> bool:
        return self.kind.dense

    @property
    def primary(self) -> str:
        return self.kind.primary

    @property
    def higher_is_better(self) -> bool:
        return self.kind.higher_is_better

    @property
    def stratify(self) -> str:
        """The target whose values stratify this task's label fractions."""
        if self.kind.stratify == "places":
            return self.target.name
        return self.target.strata or self.target.name

    def metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        return self.kind.metrics(outputs, targets, self.num_classes, self.target.ignore_index)

    def num_outputs(self) -> int:
        return self.kind.num_outputs(self.num_classes)

    def loss(self) -> nn.Module:
        return self.kind.loss(self.target.ignore_index)

    def prepare_target(self, target: torch.Tensor) -> torch.Tensor:
        return self.kind.prepare_target(target)

    def prepare_output(self, output: torch.Tensor) -> torch.Tensor:
        return self.kind.prepare_output(output)


def task_of_kind(kind: str, num_classes: int = 0, name: str | None = None, options: DenseOptions | None = None) -> Task:
    """A task of ``kind`` on a target named ``name`` (default: the kind's name) outside any store, e.g.
    for training on tensors with :class:`eossl.evaluation.finetune.TensorBatches`."""
    from eossl.data.targets import COLUMN_KINDS
    from eossl.evaluation.registry import TASK_KINDS

    name = name or kind
    source = {"column": name} if kind in COLUMN_KINDS else {"array": name}
    return Task(name, TASK_KINDS[kind](options), Target(name, kind, **source), num_classes)
