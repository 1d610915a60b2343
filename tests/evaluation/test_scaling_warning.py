"""Data scaled differently from a checkpoint's pretraining data gets a loud warning naming the band and both ranges."""

from __future__ import annotations

from dataclasses import replace

import pytest

from eossl.config import EvaluateConfig, PretrainConfig, validate_config
from eossl.data.normalize import scaling_mismatches
from eossl.data.store import SampleStore, StoreWriter
from eossl.evaluation.runner import run_evaluate
from eossl.methods.pretrain import run_pretrain

REFLECTANCE = {"mean": [0.12, 0.3], "std": [0.05, 0.1], "p2": [0.03, 0.1], "p98": [0.25, 0.5]}


def test_reflectance_checkpoint_flags_digital_numbers_and_names_the_band():
    dn = {k: [v * 10000 for v in values] for k, values in REFLECTANCE.items()}
    problems = scaling_mismatches(REFLECTANCE, dn, ["B4", "B8"])
    assert (
        len(problems) == 2 and problems[0].startswith("band B4: data 300..2500") and "DN vs reflectance" in problems[0]
    )
    assert "checkpoint 0.03..0.25" in problems[0]


def test_db_checkpoint_flags_linear_power_and_accepts_its_own_scaling():
    db = {"mean": [-12.0], "std": [3.0], "p2": [-20.0], "p98": [-6.0]}
    linear = {"mean": [0.08], "std": [0.05], "p2": [0.01], "p98": [0.25]}
    (problem,) = scaling_mismatches(db, linear, ["VV"])
    assert "band VV" in problem and "dB vs linear" in problem
    similar = {"mean": [-11.0], "std": [3.5], "p2": [-19.0], "p98": [-5.0]}
    assert scaling_mismatches(db, similar, ["VV"]) == []


@pytest.mark.slow
def test_evaluating_a_checkpoint_on_dn_data_warns_in_the_log(small_store, tmp_path):
    checkpoint = run_pretrain(
        validate_config(
            PretrainConfig,
            {
                "out": str(tmp_path / "simclr"),
                "data": {"store": str(small_store), "batch_size": 16},
                "method": {"name": "simclr"},
                "trainer": {"max_steps": 1, "progress_bar": False},
                "health": {"knn_every_n_steps": 0, "knn_bank_size": 64, "knn_query_size": 32},
            },
        )
    )
    source = SampleStore(small_store)
    dn = replace(source.modalities["s2"], scale=1.0, units="DN")  # the same values read as raw numbers
    writer = StoreWriter(tmp_path / "dn", len(source), {"s2": dn})
    writer.write({"s2": source.read("s2")}, source.table.drop(columns="sample_id"))
    writer.close(targets=[t for t in source.targets.values() if t.column is not None], dates=source.dates)
    lines: list[str] = []
    cfg = validate_config(
        EvaluateConfig,
        {
            "out": str(tmp_path / "ev"), "data": {"store": str(tmp_path / "dn")}, "checkpoint": str(checkpoint),
            "inits": ["checkpoint"], "tasks": ["single-label"], "fractions": [1.0], "seeds": [0],
            "knn": {"ks": [5]}, "linear": {"enabled": False}, "finetune": {"enabled": False},
        },
    )  # fmt: skip
    with pytest.warns(UserWarning, match="differently scaled"):
        run_evaluate(cfg, log=lines.append)
    warning = next(line for line in lines if "WARNING" in line and "scaled" in line)
    assert "band B1: data" in warning and "DN vs reflectance" in warning
    assert any("units 'surface reflectance x 10000', the data is 'DN'" in line for line in lines)
