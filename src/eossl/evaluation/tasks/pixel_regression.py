"""Pixel regression: one value per pixel (e.g. canopy height); a decoder with one output, MSE, R² over pixels.

The regression task kind, per pixel: the same loss, metrics and output shape handling."""

from __future__ import annotations

from eossl.evaluation.registry import TASK_KINDS
from eossl.evaluation.tasks.regression import Regression


@TASK_KINDS.register("pixel-regression")
class PixelRegression(Regression):
    order = 4
    dense = True
    linear = None
