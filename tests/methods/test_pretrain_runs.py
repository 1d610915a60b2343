"""`eossl pretrain` end to end for every method; checkpoints reload and resume; collapse is caught."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from torch import nn
from typer.testing import CliRunner

from eossl.checkpoints import read_checkpoint
from eossl.cli.main import app
from eossl.config import DataConfig, PretrainConfig
from eossl.errors import EmbeddingCollapseError
from eossl.methods import METHODS
from eossl.methods.pretrain import load_pretrained_encoder, run_pretrain
from eossl.models.interface import Encoder

from .test_methods import SINGLE_MODALITY, SMALL

runner = CliRunner()
QUICK_HEALTH = {"every_n_steps": 1, "knn_every_n_steps": 2, "knn_bank_size": 64, "knn_query_size": 32}


def _config(tmp_path, store, name, **extra):
    cfg = {
        "out": str(tmp_path / name),
        "data": {"store": str(store), "batch_size": 16},
        "method": {"name": name, **SMALL[name]},
        "trainer": {"max_steps": 2, "progress_bar": False, "log_every_n_steps": 1},
        "health": QUICK_HEALTH,
        **extra,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("name", SINGLE_MODALITY)
def test_every_method_runs_through_the_cli_saves_and_resumes(small_store, tmp_path, name):
    result = runner.invoke(app, ["pretrain", str(_config(tmp_path, small_store, name))], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = tmp_path / name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == name and summary["steps"] == 2 and summary["peak_rss_mb"] > 0
    health = summary["health"]
    assert health["stopped"] is None and health["collapse_warnings"] == []
    assert [k["step"] for k in health["knn_accuracy"]] == [2] and 0 <= health["knn_accuracy"][0]["accuracy"] <= 1
    assert {"std", "rank", "alignment", "uniformity"} <= set(health["last"])

    # the exported encoder equals the trained module's (for DINO: the teacher's) weights
    ckpt = out / "checkpoints" / "last.ckpt"
    state = read_checkpoint(ckpt)["state_dict"]
    pretrained = load_pretrained_encoder(ckpt)
    prefix = METHODS[name].config.export + "."
    for key, value in pretrained.encoder.state_dict().items():
        assert torch.equal(value, state[prefix + key]), key
    assert pretrained.encoder(torch.zeros(2, 12, 32, 32)).shape[0] == 2
    if name == "moco-v2":
        assert "queue" in state and "queue_pointer" in state

    # resume: two more steps continue from the saved step, optimizer and schedule
    resumed = _config(tmp_path, small_store, name, resume=str(ckpt))
    result = runner.invoke(
        app, ["pretrain", str(resumed), "trainer.max_steps=4", f"out={tmp_path / 'resumed'}"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "resumed" / "summary.json").read_text())["steps"] == 4


class CollapsedEncoder(Encoder):
    """Maps every image to the same vector: the state a collapsing run ends in."""

    num_features = 64
    in_chans = 12

    def __init__(self) -> None:
        super().__init__()
        self.point = nn.Parameter(torch.randn(self.num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point.expand(len(x), -1) + 0 * x.mean()


def _run(tmp_path, store, **health):
    cfg = PretrainConfig(
        out=tmp_path / "run",
        data=DataConfig(store=store, batch_size=16),
        method={"name": "simclr", **SMALL["simclr"]},
        trainer={"max_steps": 12, "progress_bar": False},
        health={**QUICK_HEALTH, "knn_every_n_steps": 0, **health},
    )
    return run_pretrain(cfg)


def test_a_collapsed_encoder_is_warned_about_and_stopped(small_store, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("eossl.methods.base.encoder_from_config", lambda *a, **k: CollapsedEncoder())
    with pytest.raises(EmbeddingCollapseError, match="stayed collapsed from step 1 to step 4"):
        _run(tmp_path, small_store, stop_after_steps=3)
    assert "WARNING: step 1: the embedding has COLLAPSED" in capsys.readouterr().err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["health"]["stopped"].startswith("the embedding stayed collapsed")
    assert summary["health"]["last"]["std"] < 0.02 and len(summary["health"]["collapse_warnings"]) == 1


def test_collapse_only_warns_when_stopping_is_off(small_store, tmp_path, monkeypatch):
    monkeypatch.setattr("eossl.methods.base.encoder_from_config", lambda *a, **k: CollapsedEncoder())
    _run(tmp_path, small_store, stop_after_steps=0)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 12 and summary["health"]["stopped"] is None
    assert summary["health"]["collapse_warnings"]


def test_a_healthy_run_is_not_flagged(small_store, tmp_path, capsys):
    _run(tmp_path, small_store, stop_after_steps=3)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 12 and summary["health"]["stopped"] is None
    assert summary["health"]["collapse_warnings"] == [] and "COLLAPSED" not in capsys.readouterr().err
    assert summary["health"]["last"]["rank"] > 2 and summary["health"]["last"]["std"] > 0.05
