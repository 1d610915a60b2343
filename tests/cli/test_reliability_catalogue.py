"""The reliability catalogue (docs/reliability.md), case by case through the command line: every bad
input or hostile environment gets one line naming the file, key or value, before work starts."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from eossl.cli.main import app
from eossl.data.store_writer import StoreWriter
from eossl.io import OutputLock

runner = CliRunner()
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _pretrain_config(tmp_path, store, **trainer) -> str:
    cfg = {
        "out": str(tmp_path / "run"),
        "data": {"store": str(store), "batch_size": 16},
        "encoder": {"name": "resnet18", "output_stride": 32},
        "method": {"name": "simclr", "hidden_dim": 32, "projection_dim": 16},
        "trainer": {"max_steps": 2, "progress_bar": False, **trainer},
    }
    path = tmp_path / "pretrain.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if "error: " in line]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output
    return result.output


@pytest.mark.parametrize("steps", ["0", "-5"])
def test_step_counts_that_train_nothing_are_refused(small_store, tmp_path, steps):
    result = runner.invoke(app, ["pretrain", _pretrain_config(tmp_path, small_store), f"trainer.max_steps={steps}"])
    assert "'trainer.max_steps'" in _one_line_error(result) and f"got {steps}" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "content, says",
    [(b"", "is empty (0 bytes)"), (b"\x00\x01 random bytes " * 300, "is damaged or not a PyTorch checkpoint")],
)
def test_a_damaged_checkpoint_is_named_by_evaluate(small_store, tmp_path, content, says):
    ckpt = tmp_path / "bad.ckpt"
    ckpt.write_bytes(content)
    out = tmp_path / "eval"
    overrides = [f"checkpoint={ckpt}", f"data.store={small_store}", f"out={out}", "fractions=[1.0]", "seeds=[0]"]
    result = runner.invoke(app, ["evaluate", str(CONFIGS / "evaluate.yaml"), *overrides])
    assert f"checkpoint '{ckpt}' {says}" in _one_line_error(result)
    assert not out.exists()


def test_an_output_folder_under_a_file_is_refused_before_work(small_store, tmp_path):
    (tmp_path / "file").write_text("x")
    result = runner.invoke(
        app, ["pretrain", _pretrain_config(tmp_path, small_store), f"out={tmp_path / 'file' / 'run'}"]
    )
    assert "'out': cannot write into" in _one_line_error(result)


def test_a_folder_in_use_is_refused(small_store, tmp_path):
    with OutputLock(tmp_path / "run", "eossl pretrain"):
        result = runner.invoke(app, ["pretrain", _pretrain_config(tmp_path, small_store)])
    assert "is in use by eossl pretrain (pid" in _one_line_error(result)


def test_a_full_disk_is_one_line_and_leaves_no_partial_store(tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "store"))

    monkeypatch.setattr(StoreWriter, "close", full_disk)
    result = runner.invoke(app, ["data", "synth", str(tmp_path / "store"), "--locations", "4", "--seasons", "1"])
    output = _one_line_error(result)
    assert "No space left on device while writing" in output and "store" in output
    assert not (tmp_path / "store").exists()
