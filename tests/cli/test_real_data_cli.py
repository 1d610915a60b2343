"""The real BigEarthNet example through the command line: import, pretrain, evaluate (skips without ../shared/data)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from eossl.cli.main import app
from tests.conftest import SHARED_DATA

BIGEARTHNET = SHARED_DATA / "bigearthnet-example"


@pytest.mark.slow
@pytest.mark.skipif(not BIGEARTHNET.is_dir(), reason=f"real samples not found at {BIGEARTHNET}")
def test_bigearthnet_import_pretrain_evaluate(tmp_path):
    runner = CliRunner()
    store = tmp_path / "ben"
    result = runner.invoke(app, ["data", "import", "bigearthnet", str(BIGEARTHNET), str(store)])
    assert result.exit_code == 0, result.output
    assert "6 samples from 6 items" in result.output
    split = ["data.val=0.2", "data.test=0.2"]
    result = runner.invoke(
        app,
        ["pretrain", "configs/pretrain_simclr.yaml", f"data.store={store}", f"out={tmp_path / 'simclr'}",
         "data.batch_size=4", "trainer.max_steps=2", "health.knn_every_n_steps=0", "trainer.progress_bar=false",
         *split],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    checkpoint = tmp_path / "simclr" / "checkpoints" / "last.ckpt"
    result = runner.invoke(
        app,
        ["evaluate", "configs/evaluate.yaml", f"data.store={store}", f"out={tmp_path / 'ev'}",
         f"checkpoint={checkpoint}", "inits=[checkpoint,random]", "tasks=[labels]", "fractions=[1.0]", "seeds=[0]",
         "knn.ks=[1]", "finetune.enabled=false", *split],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = (tmp_path / "ev" / "report.md").read_text()
    assert "| knn (0) | simclr |" in report and "labels (mAP)" in report
