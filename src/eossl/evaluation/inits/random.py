"""The random init: the same architecture with random weights (BatchNorm re-estimated), the baseline
that says what pretraining adds."""

from __future__ import annotations

from eossl.evaluation.inits._base import FreshInit
from eossl.evaluation.registry import INITS


@INITS.register("random")
class RandomInit(FreshInit):
    baseline = True
