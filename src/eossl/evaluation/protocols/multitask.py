"""Multi-task learning: one encoder, one head (or decoder) per task, trained together on one labelled
subset with a weighted sum of the tasks' losses (:mod:`eossl.evaluation.multitask`).

The model trains on the label subset drawn for the first listed task's stratification, so the first
task's subset is the one shared with the single-task protocols (for tasks stratified otherwise, another
subset of the same fraction, equal in size up to per-class rounding). Rows and learning curves are
written per task under ``multitask-<weighting>`` (full fine-tuning, compare with ``finetune``) or
``multitask-frozen-<weighting>`` (heads only, compare with ``frozen``); the effective loss weights of
each run are logged.
"""

from __future__ import annotations

import time
from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from eossl.errors import ConfigError
from eossl.evaluation.budget import Rates
from eossl.evaluation.context import CellScope, InitRun
from eossl.evaluation.finetune import MultitaskResult, predict_tasks, train_multitask_model
from eossl.evaluation.multitask import Weighting
from eossl.evaluation.protocols._base import Plan, TrainedProtocol
from eossl.evaluation.protocols._trained import RateChoices
from eossl.evaluation.protocols._trained_config import TrainedProtocolConfig
from eossl.evaluation.registry import PROTOCOLS
from eossl.evaluation.sink import Cell
from eossl.evaluation.tasks._base import Task


class MultitaskProtocolConfig(TrainedProtocolConfig):
    """``multitask:``: ``tasks`` (at least 2, all in the evaluation's ``tasks``; None: every one of them);
    ``weighting``: ``fixed`` (``weights``, task -> weight, 1 for every task left out) or ``uncertainty``
    (learned, Kendall et al. 2018; ``weights`` must be unset); ``mode``: ``full`` or ``frozen``."""

    enabled: bool = False
    tasks: list[str] | None = Field(None, min_length=2)
    weighting: Weighting = "fixed"
    weights: dict[str, Annotated[float, Field(ge=0)]] | None = None
    mode: Literal["full", "frozen"] = "full"

    @field_validator("tasks")
    @classmethod
    def _distinct_tasks(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("tasks must be distinct")
        return value

    @model_validator(mode="after")
    def _weights_need_fixed(self) -> MultitaskProtocolConfig:
        if self.weights and self.weighting != "fixed":
            raise ValueError(
                f"'weights' apply to weighting 'fixed' only; weighting '{self.weighting}' learns them (unset weights)"
            )
        return self

    @property
    def protocol_name(self) -> str:
        """``multitask-<weighting>`` (full fine-tuning) or ``multitask-frozen-<weighting>``."""
        return f"multitask-{'frozen-' if self.mode == 'frozen' else ''}{self.weighting}"


@PROTOCOLS.register("multitask")
class MultitaskProtocol(TrainedProtocol):
    order = 5
    config: ClassVar = MultitaskProtocolConfig

    def check(self, plan: Plan) -> None:
        if not self.enabled:
            return
        tasks, section = self.tasks(), self.section
        if len(tasks) < 2:
            source = "" if section.tasks else " (unset: every task of 'tasks')"
            raise ConfigError(f"'multitask.tasks' needs at least 2 tasks to learn together, got {tasks}{source}")
        extra = [t for t in tasks if t not in self.cfg.tasks]
        if extra:
            raise ConfigError(f"'multitask.tasks' lists {extra}, which are not in 'tasks' ({list(self.cfg.tasks)})")
        extra = sorted(set(section.fractions or []) - set(self.cfg.fractions))
        if extra:
            raise ConfigError(f"'multitask.fractions' lists {extra}, which are not in 'fractions'")
        extra = sorted(set(section.weights or {}) - set(tasks))
        if extra:
            raise ConfigError(
                f"'multitask.weights' has weights for {extra}, which are not in 'multitask.tasks' ({tasks})"
            )

    def _tasks(self, scope: CellScope) -> list[Task]:
        """The tasks learned together, in ``multitask.tasks`` order (those the store resolved)."""
        by_name = {t.name: t for t in scope.data.tasks}
        return [by_name[t] for t in self.tasks() if t in by_name]

    def cells(self, scope: CellScope) -> list[Cell]:
        return scope.joint_cells(self.section.protocol_name, self._tasks(scope), self.fractions())

    def run(self, run: InitRun) -> None:
        started, section, data, combo, ev = (
            time.perf_counter(),
            self.section,
            run.data,
            run.setting.combo,
            run.evaluation,
        )
        tasks = self._tasks(run)
        protocol, fractions = section.protocol_name, self.fractions()
        targets = list(dict.fromkeys(t.target.name for t in tasks))
        choices = RateChoices(run, protocol, section, section.mode)
        for fraction, seed in run.joint_runs(protocol, tasks, fractions):
            subset = ev.subsets(tasks[0], fraction, seed)
            train, val = data.dataset("train", combo, targets, subset), data.dataset("val", combo, targets)

            def fit(rates: Rates, seed=seed, train=train, val=val) -> MultitaskResult:
                return train_multitask_model(
                    run.encoder, run.normalizer, run.modality, tasks, train, val, section, section.mode,
                    accelerator=self.cfg.accelerator, seed=seed, weighting=section.weighting,
                    weights=section.weights, rates=rates,
                )  # fmt: skip

            first = run.cell(protocol, tasks[0], fraction, self.cfg.seeds[0])
            result = choices.train(("+".join(t.name for t in tasks), fraction), fit, first)
            outputs = predict_tasks(result.model, run.test_inputs(), ev.device)
            degraded = {a: predict_tasks(result.model, run.test_inputs(absent=a), ev.device)
                        for a in run.missing_at_test()}  # fmt: skip
            for task in tasks:
                extra = {
                    "encoder": run.encoder_name, "num_labels": len(subset),
                    "trainable_params": result.trainable_encoder_params,
                    "head_params": result.head_params[task.name],
                    "decoder": getattr(result.model.heads[task.name], "name", ""), **result.run.columns(),
                }  # fmt: skip
                lost = {absent: out[task.name] for absent, out in degraded.items()}
                run.record(run.key(protocol, task, fraction, seed), outputs[task.name], lost,
                           result.curves[task.name], extra, max(fractions))  # fmt: skip
            weights = ", ".join(f"{t} {w:.3g}" for t, w in result.loss_weights.items())
            ev.log(f"  {run.setting.name:<14} {run.init:<12} {protocol:<16} {fraction:g} seed {seed}: "
                   f"loss weights {weights}")  # fmt: skip
        ev.log(f"  {run.setting.label:<14} {run.init:<12} {protocol:<16} {time.perf_counter() - started:.0f}s")
