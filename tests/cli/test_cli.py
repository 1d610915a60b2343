"""End-to-end runs of the command line on a tiny synthetic store."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from eossl.cli.main import app

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_data_synth_and_show(tmp_path):
    store = tmp_path / "store"
    result = _invoke("data", "synth", str(store), "--locations", "8", "--seasons", "2")
    assert result.exit_code == 0, result.output
    result = _invoke("data", "show", str(store), "--count", "3")
    assert result.exit_code == 0, result.output
    assert "16 samples" in result.output and "s2" in result.output and "majority-class counts" in result.output
    assert (store / "samples.png").stat().st_size > 10_000


def test_missing_store_is_one_clear_line(tmp_path):
    result = runner.invoke(app, ["data", "show", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "error: store" in result.output and "does not exist" in result.output
    assert "Traceback" not in result.output


def test_unknown_config_key(tmp_path):
    cfg = tmp_path / "p.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"store": str(tmp_path)}, "trainer": {"max_stepz": 3}}))
    result = runner.invoke(app, ["pretrain", str(cfg)])
    assert result.exit_code == 2 and "unknown key 'trainer.max_stepz'" in result.output


def test_pretrain_then_evaluate(small_store, tmp_path):
    pre = tmp_path / "pre.yaml"
    pre.write_text(
        yaml.safe_dump(
            {
                "out": str(tmp_path / "pre"),
                "data": {"store": str(small_store), "batch_size": 32},
                "trainer": {"max_steps": 3, "progress_bar": False, "log_every_n_steps": 1},
            }
        )
    )
    result = _invoke("pretrain", str(pre))
    assert result.exit_code == 0, result.output
    ckpt = tmp_path / "pre" / "checkpoints" / "last.ckpt"
    assert ckpt.exists() and (tmp_path / "pre" / "logs" / "metrics.csv").exists()
    ev = tmp_path / "ev.yaml"
    ev.write_text(
        yaml.safe_dump(
            {
                "out": str(tmp_path / "ev"),
                "data": {"store": str(small_store)},
                "checkpoint": str(ckpt),
                "fractions": [0.25, 1.0],
                "seeds": [0, 1, 2],
                "linear": {"weight_decays": [1e-2], "max_iter": 30},
                "finetune": {"tasks": ["single-label"], "min_steps": 2, "max_steps": 2, "batch_size": 16},
            }
        )
    )
    result = _invoke("evaluate", str(ev))
    assert result.exit_code == 0, result.output
    results = pd.read_csv(tmp_path / "ev" / "results.csv")
    assert {"init", "protocol", "task", "fraction", "seed", "metric", "value"} <= set(results.columns)
    assert set(results.init) == {"simclr", "random", "image-stats"}
    assert set(results.protocol) == {"linear", "knn", "finetune"}
    assert set(results[results.protocol == "knn"].trainable_params) == {0}
    assert set(results[results.protocol == "finetune"].init) == {"simclr", "random"}
    assert set(results.seed) == {0, 1, 2} and set(results.fraction) == {0.25, 1.0}
    assert set(results.metric) >= {"accuracy", "macro_f1", "micro_f1", "mAP"}
    assert results.value.between(0, 1).all()
    report = (tmp_path / "ev" / "report.md").read_text()
    assert "## single-label: accuracy" in report and "label_efficiency.png" in report
    assert (tmp_path / "ev" / "label_efficiency.png").exists() and (tmp_path / "ev" / "config.yaml").exists()
    # features are cached: a second run reuses them and gives identical linear-probe numbers
    cached = sorted(p.name for p in (tmp_path / "ev" / "features").iterdir())
    assert len(cached) == 9  # 3 inits x 3 splits
    result = _invoke("evaluate", str(ev), "finetune.enabled=false")
    again = pd.read_csv(tmp_path / "ev" / "results.csv")
    for protocol in ("linear", "knn"):
        first = results[results.protocol == protocol].reset_index(drop=True)
        second = again[again.protocol == protocol].reset_index(drop=True)
        pd.testing.assert_frame_equal(second, first, check_dtype=False)


def test_fraction_too_small_fails_before_work(small_store, tmp_path):
    empty = tmp_path / "empty.yaml"  # every key from the command line
    empty.write_text("")
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(empty),
            f"data.store={small_store}",
            "inits=[image-stats]",
            "fractions=[0.001]",
            f"out={tmp_path / 'ev'}",
        ],
    )
    assert result.exit_code == 2 and "fewer than the" in result.output and "classes present" in result.output


@pytest.mark.slow
def test_demo_quick(tmp_path):
    result = _invoke("demo", "--quick", "--out", str(tmp_path / "demo"))
    assert result.exit_code == 0, result.output
    assert "single-label accuracy" in result.output and "| linear | simclr |" in result.output
    # the headline compares inits at equal labels and states no labels saved without a converged reference
    assert "at equal labels, one budget rule for every init:" in result.output
    assert "single-label, fine-tuned at 10% labels, simclr - random:" in result.output
    assert "No labels-saved number: it needs the from-scratch reference" in result.output
    assert (tmp_path / "demo" / "evaluate" / "report.md").exists()


def test_methods_lists_every_method_with_defaults():
    from eossl.methods import METHODS

    result = _invoke("methods")
    assert result.exit_code == 0, result.output
    names = [line.split()[0] for line in result.output.splitlines() if not line.startswith(" ")]
    assert names == list(METHODS)
    assert "queue_size=4096" in result.output and "recipe -> encoder: {'name': 'vit_tiny_patch16_224'" in result.output


def test_bench_quick_times_the_chosen_methods():
    result = _invoke("bench", "--quick", "--method", "byol", "--method", "mae")
    assert result.exit_code == 0, result.output
    assert "byol step, resnet18 12-band 32x32, batch 16" in result.output
    assert "mae step, vit_tiny_patch16_224 12-band 32x32, batch 16" in result.output
    result = runner.invoke(app, ["bench", "--quick", "--method", "simclar"])
    assert result.exit_code == 2 and "unknown ['simclar']" in result.output
