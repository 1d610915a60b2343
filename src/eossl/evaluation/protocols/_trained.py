"""The loop shared by the trained protocols: per task, fraction and seed, train a copy of the encoder
with a new head on the labelled subset, streamed from the store, then test it.

Learning rates are chosen per init on the validation split (:func:`eossl.evaluation.budget.search_rates`
over the section's grid): on the first seed of each task and fraction, reused for the other seeds
(``lr_search: first-seed``), or on every seed (``every-seed``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from eossl.evaluation.budget import Rates, rate_grid, rates_label, search_rates
from eossl.evaluation.context import InitRun
from eossl.evaluation.finetune import TrainedResult, predict, train_task_model
from eossl.evaluation.protocols._trained_config import TrainedProtocolConfig
from eossl.evaluation.sink import Cell
from eossl.models.adapters import AdapterOptions

Result = TypeVar("Result")


class RateChoices:
    """The grid point each (task, fraction) chose, so later seeds reuse it under ``first-seed`` (also
    when the first seed's cell was measured before a resumed evaluation: its recorded rates are reused)."""

    def __init__(self, run: InitRun, protocol: str, section: TrainedProtocolConfig, mode: str) -> None:
        self.run, self.protocol, self.section = run, protocol, section
        self.grid = rate_grid(section, encoder_trains=mode != "frozen")
        self.chosen: dict[tuple[str, float], Rates] = {}

    def train(self, key: tuple[str, float], train: Callable[[Rates], Result], first: Cell | None = None) -> Result:
        """Train at the chosen rates of ``key`` (searching the grid first when there is no choice yet).
        ``first``: the cell of the first seed of ``key``, whose recorded choice a resumed evaluation reuses."""
        recorded = self.run.evaluation.recorded_rates.get(first) if first is not None else None
        if key not in self.chosen and recorded is not None and len(self.grid) > 1:
            self.chosen[key] = recorded
        if key in self.chosen and self.section.lr_search == "first-seed":
            return train(self.chosen[key])
        result = search_rates(train, self.grid)
        self.chosen[key] = result.run.rates
        if len(self.grid) > 1:
            self.run.evaluation.log(
                f"  {self.run.setting.label:<14} {self.run.init:<12} {self.protocol:<16} {key[0]} {key[1]:g}: "
                f"{rates_label(result.run.rates)} chosen on validation"
            )
        return result


def train_and_test(run: InitRun, protocol: str, mode: str, section: TrainedProtocolConfig, tasks: list[str],
                   fractions: list[float], options: AdapterOptions | None = None) -> None:  # fmt: skip
    """Train and test ``mode`` (see :data:`eossl.models.adapters.ADAPTERS`) on every run not done yet;
    rows under ``protocol`` (``run.runs`` writes them after each run)."""
    started, data, combo = time.perf_counter(), run.data, run.setting.combo
    choices = RateChoices(run, protocol, section, mode)
    for task, fraction, seed, subset in run.runs(protocol, tasks=tasks, fractions=fractions):
        target = [task.target.name]
        train, val = data.dataset("train", combo, target, subset), data.dataset("val", combo, target)

        def fit(rates: Rates, task=task, seed=seed, train=train, val=val) -> TrainedResult:
            return train_task_model(
                run.encoder, run.normalizer, run.modality, task, train, val, section, mode,
                accelerator=run.cfg.accelerator, seed=seed, adapter_options=options, rates=rates,
            )  # fmt: skip

        first = run.cell(protocol, task, fraction, run.cfg.seeds[0])
        result = choices.train((task.name, fraction), fit, first)
        device = run.evaluation.device
        outputs = predict(result.model, run.test_inputs(), device)
        degraded = {a: predict(result.model, run.test_inputs(absent=a), device) for a in run.missing_at_test()}
        extra = {
            "encoder": run.encoder_name, "num_labels": len(subset), "trainable_params": result.trainable_encoder_params,
            "head_params": result.head_params, "decoder": getattr(result.model.heads[task.name], "name", ""),
            **result.run.columns(),
        }  # fmt: skip
        run.record(run.key(protocol, task, fraction, seed), outputs, degraded, result.history, extra, max(fractions))
    run.evaluation.log(f"  {run.setting.label:<14} {run.init:<12} {protocol:<16} {time.perf_counter() - started:.0f}s")
