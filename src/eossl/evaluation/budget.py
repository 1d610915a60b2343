"""The training budget: one rule for every trained protocol and every init.

A run's length is ``epochs`` passes over its labelled subset, never fewer than ``min_steps`` (so a 1%
subset still trains) and, only where ``max_steps`` is set, never more. The rule reads the subset's
size and the config, nothing about the init, so a pretrained and a random encoder at one label
fraction train for the same number of steps.

Learning rates come from a small grid (``lr`` x ``encoder_lr_factor``) chosen per init on the
validation split: no init is handed a rate tuned for another (training from scratch does not get the
0.1x encoder rate that suits a pretrained encoder unless the validation split prefers it).

Early stopping (:class:`BudgetStopping`) cannot stop before ``stop_after`` of the budget; the best
validation round's weights are kept either way. :func:`convergence` says, per run, how it ended
(``early``: the validation metric stopped improving; ``budget``: the steps ran out) and whether it
had converged: stopped early, or no better in the last third of its validation rounds than before
them (within ``converged_tolerance``, relative). The report flags runs that had not converged and
will not state "labels saved" against a reference that had not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from lightning.pytorch.callbacks import Callback

if TYPE_CHECKING:
    import lightning as L

    from eossl.evaluation.protocols._trained_config import TrainedProtocolConfig


@dataclass(frozen=True)
class Rates:
    """One point of the learning-rate grid: the heads' rate and the encoder's multiple of it."""

    lr: float
    encoder_lr_factor: float


@dataclass(frozen=True)
class Convergence:
    """How a run ended (``early`` or ``budget``) and whether its validation metric had stopped improving."""

    stopped: str
    converged: bool


@dataclass
class RunRecord:
    """How a trained run went: its steps against the budget, its best round (``best_score``: the
    selection score there) and how it ended (:class:`~eossl.evaluation.budget.Convergence`)."""

    rates: Rates
    steps: int = 0
    budget_steps: int = 0
    best_step: int = 0
    best_score: float = -math.inf
    convergence: Convergence = Convergence("budget", False)

    def columns(self) -> dict[str, object]:
        """The result columns of this run (``steps``, ``best_step``, ``budget_steps``, ``lr``, ...)."""
        return {"steps": self.steps, "best_step": self.best_step, "budget_steps": self.budget_steps,
                "lr": self.rates.lr, "encoder_lr_factor": self.rates.encoder_lr_factor,
                "stopped": self.convergence.stopped, "converged": self.convergence.converged}  # fmt: skip


def budget_steps(num_labelled: int, cfg: TrainedProtocolConfig) -> int:
    """Optimiser steps of a run on ``num_labelled`` samples: ``epochs`` over the subset, at least
    ``min_steps``, at most ``max_steps`` where set. The same for every init."""
    per_epoch = math.ceil(num_labelled / min(cfg.batch_size, num_labelled))
    steps = max(cfg.epochs * per_epoch, cfg.min_steps)
    return int(steps if cfg.max_steps is None else min(steps, cfg.max_steps))


def stop_floor(budget: int, cfg: TrainedProtocolConfig) -> int:
    """The first step at which early stopping may end a run of ``budget`` steps."""
    return math.ceil(cfg.stop_after * budget)


def rate_grid(cfg: TrainedProtocolConfig, encoder_trains: bool) -> list[Rates]:
    """The grid searched per init; the encoder factor only matters where encoder weights train."""
    factors = cfg.encoder_lr_factor if encoder_trains else cfg.encoder_lr_factor[:1]
    return [Rates(lr, factor) for lr in cfg.lr for factor in factors]


class _HasRun(Protocol):
    run: RunRecord


Result = TypeVar("Result", bound=_HasRun)


def search_rates(train: Callable[[Rates], Result], grid: Sequence[Rates]) -> Result:
    """Train once per grid point and keep the result with the best validation score (the first on ties)."""
    best: Result | None = None
    for rates in grid:
        result = train(rates)
        if best is None or result.run.best_score > best.run.best_score:
            best = result
    if best is None:
        raise ValueError("the learning-rate grid is empty")
    return best


def rates_label(rates: Rates) -> str:
    """``lr 0.002, encoder x0.1`` for logs."""
    return f"lr {rates.lr:g}, encoder x{rates.encoder_lr_factor:g}"


class BudgetStopping(Callback):
    """Stop when the validation score has not improved for ``patience`` rounds, never before ``floor``.

    Reads the module's ``history`` (one ``{"step", "score", ...}`` per validation round, appended
    before this runs) and sets ``stopped_early`` on it when it stops the run.
    """

    def __init__(self, patience: int, floor: int) -> None:
        self.patience, self.floor = patience, floor

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        history = pl_module.history
        if self.patience <= 0 or not history or history[-1]["step"] < self.floor:
            return
        scores = [h["score"] for h in history]
        best = max(range(len(scores)), key=scores.__getitem__)
        if len(scores) - 1 - best >= self.patience:
            trainer.should_stop = True
            pl_module.stopped_early = True


def convergence(scores: Sequence[float], stopped_early: bool, tolerance: float) -> Convergence:
    """Whether a run with validation ``scores`` (higher is better, one per round) had converged.

    Stopped early: converged (the metric stopped improving after the floor). Otherwise converged when
    the best of the last third of the rounds is not better than the best before them by more than
    ``tolerance`` x its magnitude; with fewer than three rounds there is no telling, so not converged.
    """
    if stopped_early:
        return Convergence("early", True)
    if len(scores) < 3:
        return Convergence("budget", False)
    cut = len(scores) - max(1, len(scores) // 3)
    before, last = max(scores[:cut]), max(scores[cut:])
    return Convergence("budget", last <= before + tolerance * max(abs(before), 1e-8))


__all__ = [
    "BudgetStopping",
    "Convergence",
    "Rates",
    "RunRecord",
    "budget_steps",
    "convergence",
    "rate_grid",
    "rates_label",
    "search_rates",
    "stop_floor",
]
