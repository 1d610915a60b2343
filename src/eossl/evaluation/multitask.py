"""Loss weighting for multi-task learning: one encoder, one head per task, one summed loss.

Two schemes, chosen by ``multitask.weighting``:

``fixed``
    ``L = sum_t w_t * L_t`` with user-given weights ``w_t`` (``multitask.weights``; 1 for every task
    left out). With one task of weight 1 this is that task's loss, bit for bit.

``uncertainty``
    Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, "Multi-task learning using
    uncertainty to weigh losses for scene geometry and semantics", CVPR 2018), in the common
    simplified form

        ``L = sum_t exp(-s_t) * L_t + s_t``

    with one learnable log-variance ``s_t = log(sigma_t^2)`` per task, initialised to 0 (every weight
    starts at 1). For a fixed ``L_t`` the optimum is ``s_t = log(L_t)``, i.e. an effective weight
    ``exp(-s_t) = 1 / L_t``: a task with a larger loss is weighted down, and the ``+ s_t`` term stops
    every weight from collapsing to 0. The ``s_t`` train at the heads' learning rate without weight
    decay (decay would pull them to 0, i.e. towards equal weights).

:meth:`LossWeighting.weights` gives the effective weights (``w_t`` or ``exp(-s_t)``) for logging.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import nn

Weighting = Literal["fixed", "uncertainty"]
WEIGHTINGS: tuple[str, ...] = ("fixed", "uncertainty")


class LossWeighting(nn.Module):
    """Combines per-task losses into one scalar; subclasses define how."""

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("loss weighting needs at least one task")
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"loss weighting got duplicate tasks: {list(tasks)}")
        self.tasks = list(tasks)

    def _check(self, losses: Mapping[str, torch.Tensor]) -> None:
        if set(losses) != set(self.tasks):
            raise KeyError(f"losses for {sorted(losses)} given, expected one per task: {sorted(self.tasks)}")

    def forward(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The combined loss of ``losses`` (task name -> scalar loss)."""
        raise NotImplementedError

    def weights(self) -> dict[str, float]:
        """The effective weight of each task's loss, as plain floats (for logging)."""
        raise NotImplementedError


class FixedWeighting(LossWeighting):
    """``L = sum_t w_t * L_t`` with constant weights (default 1 each); no trainable parameters."""

    def __init__(self, tasks: Sequence[str], weights: Mapping[str, float] | None = None) -> None:
        super().__init__(tasks)
        weights = dict(weights or {})
        unknown = set(weights) - set(self.tasks)
        if unknown:
            raise ValueError(f"weights given for {sorted(unknown)}, which are not among the tasks {self.tasks}")
        negative = {t: w for t, w in weights.items() if w < 0}
        if negative:
            raise ValueError(f"loss weights must be >= 0, got {negative}")
        self.fixed = {t: float(weights.get(t, 1.0)) for t in self.tasks}

    def forward(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        self._check(losses)
        total = self.fixed[self.tasks[0]] * losses[self.tasks[0]]
        for task in self.tasks[1:]:
            total = total + self.fixed[task] * losses[task]
        return total

    def weights(self) -> dict[str, float]:
        return dict(self.fixed)


class UncertaintyWeighting(LossWeighting):
    """``L = sum_t exp(-s_t) * L_t + s_t`` with a learnable log-variance ``s_t`` per task (init 0).

    Kendall, Gal & Cipolla (CVPR 2018). ``log_vars[task]`` holds ``s_t``; the effective weight of
    task ``t`` is ``exp(-s_t)``.
    """

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__(tasks)
        self.log_vars = nn.ParameterDict({t: nn.Parameter(torch.zeros(())) for t in self.tasks})

    def forward(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        self._check(losses)
        terms = [torch.exp(-self.log_vars[t]) * losses[t] + self.log_vars[t] for t in self.tasks]
        return torch.stack(terms).sum()

    def weights(self) -> dict[str, float]:
        return {t: float(torch.exp(-self.log_vars[t].detach())) for t in self.tasks}


def loss_weighting(kind: str, tasks: Sequence[str], weights: Mapping[str, float] | None = None) -> LossWeighting:
    """The :class:`LossWeighting` for ``kind`` (``fixed`` or ``uncertainty``) over ``tasks``.

    ``weights`` (task -> weight) apply to ``fixed`` only; passing them with ``uncertainty`` is an error,
    as the weights would be silently ignored.
    """
    if kind == "fixed":
        return FixedWeighting(tasks, weights)
    if kind == "uncertainty":
        if weights:
            raise ValueError("weights apply to weighting 'fixed' only; 'uncertainty' learns them")
        return UncertaintyWeighting(tasks)
    raise ValueError(f"unknown loss weighting '{kind}' (known: {', '.join(WEIGHTINGS)})")
