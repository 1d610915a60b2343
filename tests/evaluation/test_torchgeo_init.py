"""TorchGeo weights as an evaluation init, offline: a fake SSL4EO-S12 ResNet-18 file (13 bands)."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
import timm
import torch
from typer.testing import CliRunner

from eossl.cli.main import app
from eossl.config import EvaluateConfig, validate_config
from eossl.errors import ConfigError
from eossl.evaluation import INITS
from eossl.evaluation.context import Evaluation
from eossl.evaluation.data import EvalData
from eossl.evaluation.runner import run_evaluate
from eossl.evaluation.sink import ResultSink, Setting

WEIGHTS = "ResNet18_Weights.SENTINEL2_ALL_MOCO"
FILE_NAME = "resnet18_sentinel2_all_moco-59bfdff9.pth"
TORCHGEO_BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8a", "B9", "B10", "B11", "B12"]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Any attempt of timm or torch hub to fetch weights fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"tried to download weights: {args}")

    for fetch in ("load_state_dict_from_url", "load_state_dict_from_hf", "download_cached_file"):
        monkeypatch.setattr(f"timm.models._builder.{fetch}", refuse)
    for fetch in ("load_state_dict_from_url", "download_url_to_file"):
        monkeypatch.setattr(f"torch.hub.{fetch}", refuse)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    torch.manual_seed(0)
    state = timm.create_model("resnet18", in_chans=13, num_classes=1000).state_dict()
    path = tmp_path_factory.mktemp("torchgeo") / FILE_NAME
    torch.save(state, path)
    return path, state


def _config(store, out, **extra):
    raw = {"out": str(out), "data": {"store": str(store)}, "inits": ["torchgeo"], "tasks": ["single-label"],
           "fractions": [1.0], "seeds": [0], "finetune": {"enabled": False}, **extra}  # fmt: skip
    return validate_config(EvaluateConfig, raw)


def _start(cfg, tmp_path, logs=None):
    """The torchgeo init built for ``s2`` the way the runner builds it."""
    init = INITS["torchgeo"](cfg, {})
    init.check()
    data = EvalData(cfg)
    log = logs.append if logs is not None else (lambda _: None)
    evaluation = Evaluation(cfg, data, None, ResultSink(tmp_path / "sink", 0, 0), torch.device("cpu"), log)
    return init.start(Setting(("s2",)), evaluation), data


def test_input_conv_takes_the_store_bands_by_name(small_store, weights_file, tmp_path):
    path, state = weights_file
    cfg = _config(small_store, tmp_path / "ev", torchgeo={"weights": WEIGHTS, "file": str(path)},
                  encoder={"name": "vit_tiny_patch16_224"})  # fmt: skip
    logs: list[str] = []
    run, data = _start(cfg, tmp_path, logs)
    model = run.encoder.model
    bands = data.modalities["s2"].bands
    assert len(bands) == 12 and "B10" not in bands and run.encoder_name == "resnet18"
    picks = [TORCHGEO_BANDS.index(b.replace("B8A", "B8a")) for b in bands]
    assert picks[bands.index("B11")] == 11 and picks[bands.index("B8A")] == 8
    assert model.conv1.weight.shape == (64, 12, 7, 7)
    assert torch.equal(model.conv1.weight, state["conv1.weight"][:, picks])
    assert torch.equal(model.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    assert torch.equal(model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert not any(k.startswith("fc.") for k in model.state_dict())
    # BatchNorm is re-estimated on the store's images like every fresh init
    assert not torch.equal(model.bn1.running_mean, state["bn1.running_mean"])
    text = "\n".join(logs)
    assert "replaces encoder.name 'vit_tiny_patch16_224'" in text and "Resize, CenterCrop not applied" in text


def test_normaliser_maps_reflectance_like_torchgeo_maps_dn(small_store, weights_file, tmp_path, monkeypatch):
    path, _ = weights_file
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / FILE_NAME).symlink_to(path)
    monkeypatch.setattr("torch.hub.get_dir", lambda: str(tmp_path / "hub"))
    cfg = _config(small_store, tmp_path / "ev", torchgeo={"weights": WEIGHTS})  # file from torch hub's cache
    init = INITS["torchgeo"](cfg, {})
    init.check()
    assert init.source() == tmp_path / "hub" / "checkpoints" / FILE_NAME
    data = EvalData(cfg)
    evaluation = Evaluation(cfg, data, None, ResultSink(tmp_path / "sink", 0, 0), torch.device("cpu"), print)
    normalizer = init.normalizer(Setting(("s2",)), evaluation)
    dn = torch.rand(2, 12, 8, 8, dtype=torch.float64) * 12000
    ours = normalizer({"s2": (dn / 10000).float()})["s2"]
    assert torch.allclose(ours.double(), (dn - 0) / 10000, atol=1e-6)


def test_both_name_forms_resolve_to_the_same_weights(small_store, weights_file, tmp_path):
    from torchgeo.models import ResNet18_Weights

    from eossl.evaluation.inits.torchgeo import resolve_weights

    assert resolve_weights(WEIGHTS) == resolve_weights("RESNET18_SENTINEL2_ALL_MOCO")
    assert resolve_weights("resnet18_sentinel2_all_moco") == ("resnet18", ResNet18_Weights.SENTINEL2_ALL_MOCO)
    for name in (WEIGHTS, "RESNET18_SENTINEL2_ALL_MOCO"):
        cfg = _config(small_store, tmp_path / "ev", torchgeo={"weights": name, "file": str(weights_file[0])})
        init = INITS["torchgeo"](cfg, {})
        init.check()
        assert init.weights() is ResNet18_Weights.SENTINEL2_ALL_MOCO and init.architecture() == "resnet18"


def test_clear_errors(small_store, weights_file, tmp_path, monkeypatch):
    monkeypatch.setattr("torch.hub.get_dir", lambda: str(tmp_path / "empty-hub"))

    def check(**section):
        INITS["torchgeo"](_config(small_store, tmp_path / "ev", torchgeo=section), {}).check()

    expected = tmp_path / "empty-hub" / "checkpoints" / FILE_NAME
    with pytest.raises(ConfigError, match="does not exist") as missing:
        check(weights=WEIGHTS)
    assert str(expected) in str(missing.value) and "https://hf.co/torchgeo/resnet18_sentinel2_all_moco" in str(
        missing.value
    )
    assert "\n" not in str(missing.value)
    with pytest.raises(ConfigError, match=r"unknown TorchGeo weights.*RESNET18_SENTINEL2_ALL_MOCO"):
        check(weights="RESNET18_SENTINEL2_ALL_MOC", file=str(weights_file[0]))
    with pytest.raises(ConfigError, match=r"unknown TorchGeo weights 'ResNet18_Weights\.NOPE'"):
        check(weights="ResNet18_Weights.NOPE")
    with pytest.raises(ConfigError, match=r"have no band B1, B5, .*B12 of modality 's2' \(their bands: B4, B3, B2\)"):
        check(weights="ResNet18_Weights.SENTINEL2_RGB_MOCO", file=str(weights_file[0]))
    with pytest.raises(ConfigError, match=r"'inits' contains 'torchgeo' but 'torchgeo\.weights' is not set"):
        run_evaluate(_config(small_store, tmp_path / "none"))
    assert not (tmp_path / "none").exists()
    with pytest.raises(ConfigError, match=r"unknown key 'torchgeo\.weight'"):
        _config(small_store, tmp_path / "ev", torchgeo={"weight": WEIGHTS})
    cfg = _config(small_store, tmp_path / "ev", torchgeo={"weights": WEIGHTS, "file": str(weights_file[0])})
    with monkeypatch.context() as patched:
        patched.setitem(sys.modules, "torchgeo.models", None)  # TorchGeo not installed
        with pytest.raises(ConfigError, match=r"pip install 'eossl\[torchgeo\]'"):
            INITS["torchgeo"](cfg, {}).check()
    assert "one sensor" in INITS["torchgeo"](cfg, {}).unavailable(Setting(("s2", "s1"), "early"))


def test_a_vit_maps_its_patch_embedding_and_nested_prefixed_files_load(small_store, tmp_path):
    torch.manual_seed(0)
    state = timm.create_model("vit_small_patch16_224", in_chans=13, num_classes=0).state_dict()
    path = tmp_path / "vits16.pth"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in state.items()}, "epoch": 99}, path)
    cfg = _config(small_store, tmp_path / "ev", torchgeo={"weights": "VIT_SMALL_PATCH16_224_SENTINEL2_ALL_MOCO",
                                                          "file": str(path)})  # fmt: skip
    run, data = _start(cfg, tmp_path)
    picks = [TORCHGEO_BANDS.index(b.replace("B8A", "B8a")) for b in data.modalities["s2"].bands]
    model = run.encoder.model
    assert run.encoder_name == "vit_small_patch16_224"
    assert torch.equal(model.patch_embed.proj.weight, state["patch_embed.proj.weight"][:, picks])
    assert torch.equal(model.blocks[2].attn.qkv.weight, state["blocks.2.attn.qkv.weight"])
    assert model.pos_embed.shape[1] == 1 + 2 * 2  # resampled to the store's 32-px patches


def test_evaluate_end_to_end(small_store, weights_file, tmp_path):
    out = tmp_path / "ev"
    result = CliRunner().invoke(
        app,
        ["evaluate", "/dev/null", f"data.store={small_store}", f"out={out}", "inits=[torchgeo,random]",
         "tasks=[single-label]", "fractions=[1.0]", "seeds=[0]", "finetune.enabled=false", "knn.ks=[5]",
         "linear.weight_decays=[0.01]", "linear.max_iter=30", f"torchgeo.weights={WEIGHTS}",
         f"torchgeo.file={weights_file[0]}"],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    results = pd.read_csv(out / "results.csv")
    assert set(results.init) == {"torchgeo", "random"} and set(results.protocol) == {"linear", "knn"}
    assert results.value.notna().all() and len(results[results.init == "torchgeo"]) > 0
    report = (out / "report.md").read_text()
    assert "torchgeo vs random" not in report  # both are baselines
    assert "the weights are a resnet18" not in result.output  # encoder.name is already resnet18
    assert "s2 normalised as TorchGeo does, (DN - 0) / 10000, DN = physical x 10000" in result.output


def test_an_inits_entry_names_the_weights():
    """``inits: [torchgeo:NAME]`` means ``inits: [torchgeo]`` with ``torchgeo.weights: NAME``; others take none."""
    from eossl.config import load_config

    cfg = load_config(EvaluateConfig, None, ["data.store=x", "inits=[torchgeo:RESNET18_SENTINEL2_ALL_MOCO,random]"])
    assert cfg.inits == ["torchgeo", "random"] and cfg.torchgeo.weights == "RESNET18_SENTINEL2_ALL_MOCO"
    with pytest.raises(ConfigError, match="only torchgeo take a ':VALUE' argument"):
        load_config(EvaluateConfig, None, ["data.store=x", "inits=[random:3]"])
