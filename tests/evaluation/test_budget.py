"""The budget rule: one length, one learning-rate grid and one stopping rule for every init."""

from __future__ import annotations

import pytest

from eossl.config import EvaluateConfig, validate_config
from eossl.errors import ConfigError
from eossl.evaluation.budget import Convergence, Rates, budget_steps, convergence, rate_grid, stop_floor


def _section(name: str = "finetune", **values):
    return getattr(validate_config(EvaluateConfig, {"data": {"store": "x"}, name: values}), name.replace("-", "_"))


def test_budget_is_epochs_over_the_subset_with_a_floor_and_an_optional_cap():
    cfg = _section()  # defaults: 30 epochs, at least 100 steps, batch 64, no cap
    assert budget_steps(70, cfg) == 100  # 1% of 7,000: 2 batches x 30 = 60 < the floor
    assert budget_steps(700, cfg) == 11 * 30
    assert budget_steps(7000, cfg) == 110 * 30  # every label: 3,300 steps, not clipped
    assert budget_steps(7000, _section(max_steps=500)) == 500
    assert budget_steps(10, _section(batch_size=64, epochs=2, min_steps=1)) == 2  # a subset smaller than a batch
    assert stop_floor(3300, cfg) == 1650 and stop_floor(3300, _section(stop_after=0)) == 0


def test_learning_rates_are_a_grid_and_scalars_still_read():
    assert rate_grid(_section(), encoder_trains=True) == [Rates(2e-3, 1.0), Rates(2e-3, 0.1)]
    assert rate_grid(_section(), encoder_trains=False) == [Rates(2e-3, 1.0)]  # the factor is moot when frozen
    cfg = _section(lr=[1e-3, 3e-3], encoder_lr_factor=0.5)
    assert rate_grid(cfg, encoder_trains=True) == [Rates(1e-3, 0.5), Rates(3e-3, 0.5)]
    assert _section("frozen").lr == [1e-2]
    with pytest.raises(ConfigError, match=r"finetune\.lr"):
        _section(lr=[1e-3, -1.0])
    with pytest.raises(ConfigError, match=r"finetune\.encoder_lr_factor"):
        _section(encoder_lr_factor=[-0.1])


@pytest.mark.parametrize(
    ("scores", "stopped_early", "expected"),
    [
        ([0.30, 0.50, 0.60, 0.61, 0.612, 0.615], False, Convergence("budget", True)),  # +0.005 < 1% of 0.61
        ([0.30, 0.40, 0.50, 0.55, 0.60, 0.65], False, Convergence("budget", False)),  # still climbing
        ([0.30, 0.40, 0.41, 0.39], True, Convergence("early", True)),
        ([0.30, 0.40], False, Convergence("budget", False)),  # too few rounds to tell
        ([-2.0, -1.5, -1.2, -1.19, -1.195, -1.19], False, Convergence("budget", True)),  # -rmse: a plateau
    ],
)
def test_convergence_reads_the_last_third_of_the_validation_rounds(scores, stopped_early, expected):
    assert convergence(scores, stopped_early, tolerance=0.01) == expected
