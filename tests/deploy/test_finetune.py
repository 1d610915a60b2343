"""``eossl finetune``: one task model trained on a store's target and saved as a folder that reloads to
the same predictions (its test metrics recomputed from the folder equal the saved ones to 1e-6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from eossl.cli.main import app
from eossl.config import DataConfig, PretrainConfig
from eossl.data.synth.generator import SynthSpec, synthesize_store
from eossl.deploy.export import ExportRequest, export_encoder
from eossl.deploy.finetune import FinetuneConfig, evaluation_config, run_finetune
from eossl.deploy.task_folder import load_task_model
from eossl.errors import ConfigError
from eossl.evaluation.data import EvalData
from eossl.methods.pretrain import run_pretrain

runner = CliRunner()
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "finetune.yaml"
SHORT = {"epochs": 1, "min_steps": 3, "max_steps": 3, "lr": [1e-3], "encoder_lr_factor": [1.0], "validations": 1,
         "batch_size": 16}  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("stores") / "dense"
    spec = SynthSpec(num_locations=40, seasons=2, patch_size=32, seed=5, forest_targets=True, change_fraction=0.4)
    return synthesize_store(path, spec)


@pytest.fixture(scope="module")
def pretrained(store, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pretrained")
    cfg = PretrainConfig(
        out=root / "run", data=DataConfig(store=store, batch_size=16),
        encoder={"name": "test_resnet", "img_size": 32}, trainer={"max_steps": 1, "progress_bar": False},
        method={"name": "simclr", "hidden_dim": 32, "projection_dim": 16},
        health={"knn_every_n_steps": 0, "knn_bank_size": 32, "knn_query_size": 16},
    )  # fmt: skip
    run_pretrain(cfg)
    export_encoder(ExportRequest(root / "run", root / "export"))
    return {"run": root / "run", "export": root / "export"}


def _reloaded_test_metrics(cfg) -> dict[str, float]:
    """The folder's model applied to the test split, scored as finetune scored it."""
    deployed = load_task_model(cfg.out)
    data = EvalData(evaluation_config(cfg))
    (task,) = data.tasks
    combo = tuple(deployed.entry["dates"]) or (cfg.modalities or cfg.data.modality,)
    outputs = torch.cat([deployed(x)[task.name] for x in data.inputs("test", combo, 64)])
    return task.metrics(outputs, data.target("test", task))


def test_cli_trains_and_saves_a_deployable_classifier(store, pretrained, tmp_path):
    out = tmp_path / "model"
    args = ["finetune", str(CONFIG), f"checkpoint={pretrained['run']}", f"data.store={store}", "task=label",
            f"out={out}", *(f"training.{k}={json.dumps(v)}" for k, v in SHORT.items())]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    entry = json.loads((out / "config.json").read_text())["eossl"]
    assert entry["kind"] == "task-model" and entry["tasks"][0]["kind"] == "single-label"
    assert len(entry["class_names"]) == entry["tasks"][0]["num_classes"] > 1
    assert [b["name"] for b in entry["bands"]][:3] == ["B1", "B2", "B3"] and len(entry["normalization"]["mean"]) == 12
    assert set(entry["metrics"]) == {"val", "test"} and "accuracy" in entry["metrics"]["test"]
    assert entry["training"]["init"] == "simclr" and entry["training"]["num_labels"] > 0
    cfg = FinetuneConfig(out=out, data={"store": store}, checkpoint=pretrained["run"], task="label")
    reloaded = _reloaded_test_metrics(cfg)
    assert reloaded == pytest.approx(entry["metrics"]["test"], abs=1e-6)


@pytest.mark.parametrize(("task", "protocol", "extra"), [
    ("forest", "frozen", {}),
    ("tree_density", "adapter", {"adapter": {"mode": "spectral"}}),
    ("change", "finetune", {"fusion": {"dates_modes": ["siam-diff"]}}),
])  # fmt: skip
def test_dense_models_from_an_export_reload_to_the_same_predictions(store, pretrained, tmp_path, task, protocol,
                                                                     extra):  # fmt: skip
    cfg = FinetuneConfig(out=tmp_path / task, data={"store": store}, checkpoint=pretrained["export"], task=task,
                         protocol=protocol, training=SHORT, **extra)  # fmt: skip
    summary = run_finetune(cfg, log=lambda line: None)
    entry = json.loads((cfg.out / "config.json").read_text())["eossl"]
    assert _reloaded_test_metrics(cfg) == pytest.approx(summary.metrics["test"], abs=1e-6)
    assert entry["dates"] == (["s2", "s2_after"] if task == "change" else [])
    assert entry["recipe"]["fusion"] == ("siam-diff" if task == "change" else "none")
    if protocol == "frozen":  # the encoder's weights are the export's, untouched
        exported = load_file(str(pretrained["export"] / "model.safetensors"))
        saved = load_file(str(cfg.out / "model.safetensors"))
        assert all(torch.equal(saved[f"encoder.model.{k}"], v) for k, v in exported.items())


def test_a_fraction_of_the_labels_from_random_init(store, tmp_path):
    common = {"data": {"store": store}, "init": "random", "encoder": {"name": "test_resnet"}, "task": "label",
              "training": SHORT}  # fmt: skip
    full = run_finetune(FinetuneConfig(out=tmp_path / "all", **common), log=print)
    part = run_finetune(FinetuneConfig(out=tmp_path / "part", fraction=0.25, **common), log=print)
    labels = [json.loads((s.out / "config.json").read_text())["eossl"]["training"]["num_labels"] for s in (full, part)]
    assert labels[1] < labels[0] / 2


def test_bad_configs_get_clear_errors(store, pretrained, tmp_path):
    with pytest.raises(ConfigError, match="'checkpoint' is not set"):
        run_finetune(FinetuneConfig(out=tmp_path / "a", data={"store": store}, task="label"))
    with pytest.raises(ConfigError, match="'tasks': 'crop' is neither a target of store"):
        run_finetune(FinetuneConfig(out=tmp_path / "b", data={"store": store}, init="random", task="crop"))
    with pytest.raises(ConfigError, match=r"'task' is not set and store .* declares 7 targets"):
        run_finetune(FinetuneConfig(out=tmp_path / "c", data={"store": store}, init="random"))
    with pytest.raises(ConfigError, match=r"'adapter\.mode': unknown adapter 'prompt'"):
        run_finetune(FinetuneConfig(out=tmp_path / "d", data={"store": store}, checkpoint=pretrained["run"],
                                    task="label", protocol="adapter", adapter={"mode": "prompt"}))  # fmt: skip
    (tmp_path / "e").mkdir()
    with pytest.raises(ConfigError, match="already exists"):
        run_finetune(FinetuneConfig(out=tmp_path / "e", data={"store": store}, init="random",
                                    encoder={"name": "test_resnet"}, task="label", training=SHORT))  # fmt: skip


def test_torchgeo_weights_as_the_init_of_a_task_model(store, tmp_path, monkeypatch):
    """``init: torchgeo:NAME`` with a local weights file (a stand-in for TorchGeo's SSL4EO-S12 MoCo ResNet-18)."""
    pytest.importorskip("torchgeo")
    import timm

    torch.manual_seed(0)
    weights = tmp_path / "resnet18_sentinel2_all_moco-59bfdff9.pth"
    torch.save(timm.create_model("resnet18", in_chans=13, num_classes=0).state_dict(), weights)
    monkeypatch.setattr("torch.hub.load_state_dict_from_url", lambda *a, **k: pytest.fail("tried to download"))
    args = ["finetune", str(CONFIG), "init=torchgeo:RESNET18_SENTINEL2_ALL_MOCO", f"torchgeo.file={weights}",
            f"data.store={store}", "task=label", f"out={tmp_path / 'model'}", "protocol=frozen",
            *(f"training.{k}={json.dumps(v)}" for k, v in SHORT.items())]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    entry = json.loads((tmp_path / "model" / "config.json").read_text())["eossl"]
    assert entry["training"]["init"] == "torchgeo" and entry["recipe"]["encoder"]["name"] == "resnet18"
    assert entry["normalization"]["std"] == pytest.approx([1.0] * 12)  # TorchGeo's DN / 10000 = reflectance
    assert load_task_model(tmp_path / "model").model.encoder.model.conv1.weight.shape[1] == 12
