"""``eossl evaluate`` over modality combinations: every fusion mode, metadata planes, missing sensors."""

from __future__ import annotations

import pandas as pd
import pytest

from eossl.config import ConfigError, EvaluateConfig, validate_config
from eossl.evaluation.report import fusion_table
from eossl.evaluation.runner import run_evaluate

TINY = {"min_steps": 2, "max_steps": 2, "batch_size": 16, "validations": 1, "patience": 0}


def _config(store, out, **extra) -> EvaluateConfig:
    raw = {
        "out": str(out),
        "data": {"store": str(store)},
        "inits": ["random", "image-stats"],
        "tasks": ["single-label", "segmentation"],
        "fractions": [1.0],
        "seeds": [0],
        "linear": {"weight_decays": [1e-2], "max_iter": 20},
        "knn": {"enabled": False},
        "finetune": TINY,
        "prediction_maps": 1,
        **extra,
    }
    return validate_config(EvaluateConfig, raw)


def test_combinations_auto_and_explicit():
    base = {"data": {"store": "x"}}
    pool = {"candidates": ["s2", "s1", "dem"]}
    auto = validate_config(EvaluateConfig, {**base, "modalities": "auto", "fusion": pool})
    assert auto.combinations() == [("s2",), ("s1",), ("dem",), ("s2", "s1"), ("s2", "dem"), ("s1", "dem"),
                                   ("s2", "s1", "dem")]  # fmt: skip
    assert validate_config(EvaluateConfig, base).combinations() == [("s2",)]
    explicit = validate_config(EvaluateConfig, {**base, "modalities": ["s2", "s2+meta"]})
    assert explicit.combinations() == [("s2",), ("s2", "meta")]
    with pytest.raises(ConfigError, match="distinct modalities"):
        validate_config(EvaluateConfig, {**base, "modalities": ["s2+s2"]}).combinations()


@pytest.mark.slow
def test_every_fusion_mode_with_metadata_and_a_missing_sensor(small_store, tmp_path):
    fusion = {"modes": ["early", "stems", "late-concat", "late-attention"], "sensor_dropout": 0.3,
              "missing_at_test": ["s1"], "metadata": ["season", "climate_zone"]}  # fmt: skip
    cfg = _config(small_store, tmp_path / "ev", modalities=["s2", "s2+s1", "dem+meta"], fusion=fusion)
    results = run_evaluate(cfg, log=lambda _: None)
    trained = results[(results.protocol == "finetune") & (results.metric == "accuracy")]
    settings = set(zip(trained.modality, trained.fusion, trained.missing, strict=True))
    expected = {("s2", "none", "")} | {("s2+s1", m, x) for m in fusion["modes"] for x in ("", "s1")}
    expected |= {("dem+meta", m, "") for m in fusion["modes"]}
    assert settings == expected
    assert results.value.notna().all() and (trained.value.between(0, 1)).all()
    # image statistics depend on the channels only: evaluated once per combination
    stats = results[results.init == "image-stats"]
    assert set(zip(stats.modality, stats.fusion, strict=True)) == {("s2", "none"), ("s2+s1", "early"),
                                                                    ("dem+meta", "early")}  # fmt: skip
    # the late-fusion encoder is twice the size of one encoder; the head sees the concatenated features
    params = trained.groupby("fusion").trainable_params.max()
    assert params["late-concat"] == pytest.approx(2 * params["none"], rel=0.01)
    report = (tmp_path / "ev" / "report.md").read_text()
    assert "## Modality combinations at 100% labels" in report
    assert "| random | finetune | s2+s1 late-concat (s1 missing) |" in report
    saved = pd.read_csv(tmp_path / "ev" / "results.csv")
    assert {"fusion", "missing"} <= set(saved.columns)


def test_fusion_table_layout():
    rows = []
    for setting, fusion, values in (("s2", "none", (0.6, 0.7)), ("s2+s1", "late-concat", (0.8, 0.9))):
        for seed, value in enumerate(values):
            rows.append({"init": "random", "protocol": "finetune", "task": "single-label", "fraction": 1.0,
                         "seed": seed, "metric": "accuracy", "value": value, "modality": setting,
                         "fusion": fusion, "missing": ""})  # fmt: skip
    text = fusion_table(pd.DataFrame(rows), 1.0)
    assert "| random | finetune | s2 | 0.650 ± 0.071 |" in text
    assert "| random | finetune | s2+s1 late-concat | **0.850 ± 0.071** |" in text
    assert fusion_table(pd.DataFrame(rows[:2]), 1.0) == ""  # one setting: no fusion table


def test_fusion_plan_errors(small_store, tmp_path):
    with pytest.raises(ConfigError, match=r"'adapter' protocols adapt one modality"):
        run_evaluate(_config(small_store, tmp_path / "a", modalities=["s2+s1"], adapter={"enabled": True}))
    with pytest.raises(ConfigError, match=r"fusion\.missing_at_test"):
        run_evaluate(_config(small_store, tmp_path / "b", modalities=["s2+s1"], fusion={"missing_at_test": ["dem"]}))
    with pytest.raises(ConfigError, match=r"fusion.metadata.*target"):
        run_evaluate(_config(small_store, tmp_path / "c", modalities=["s2+meta"], fusion={"metadata": ["label"]}))
    with pytest.raises(ConfigError, match=r"'lulc' is categorical"):
        run_evaluate(_config(small_store, tmp_path / "d", modalities=["s2+lulc"]))


@pytest.mark.slow
def test_a_shared_cross_modal_checkpoint_evaluates_alone_with_stems_and_late(small_store, tmp_path):
    from eossl.config import PretrainConfig
    from eossl.methods.pretrain import run_pretrain

    pretrain = validate_config(PretrainConfig, {
        "out": str(tmp_path / "pre"), "data": {"store": str(small_store), "batch_size": 16, "modalities": ["s2", "s1"]},
        "encoder": {"name": "test_resnet"}, "method": {"name": "dual-simclr", "encoders": "shared", "hidden_dim": 32,
                                                      "projection_dim": 16},
        "trainer": {"max_steps": 2, "progress_bar": False}, "health": {"knn_every_n_steps": 0}})  # fmt: skip
    checkpoint = run_pretrain(pretrain)
    logs: list[str] = []
    cfg = _config(small_store, tmp_path / "ev", checkpoint=str(checkpoint), inits=["checkpoint"],
                  tasks=["single-label"], modalities=["s2", "s1", "s2+s1", "s2+dem"],
                  fusion={"modes": ["stems", "early", "late-sum"]})  # fmt: skip
    results = run_evaluate(cfg, log=logs.append)
    linear = results[(results.protocol == "linear") & (results.metric == "accuracy")]
    assert set(zip(linear.modality, linear.fusion, strict=True)) == {
        ("s2", "none"), ("s1", "none"), ("s2+s1", "stems"), ("s2+s1", "late-sum")}  # fmt: skip
    assert set(linear.init) == {"dual-simclr"}
    # what the checkpoint cannot provide is skipped with the reason in the log
    assert any("s2+s1 early" in line and "fusion mode 'stems'" in line for line in logs)
    assert any("s2+dem" in line and "no encoder for dem" in line for line in logs)
