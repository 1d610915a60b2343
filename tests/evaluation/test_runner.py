"""``run_evaluate`` end to end on a tiny store: every task, every protocol, the saved artefacts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from eossl.config import EvaluateConfig, validate_config
from eossl.data.modality import Modality
from eossl.data.targets import Target
from eossl.evaluation import INITS, TASK_KINDS
from eossl.evaluation.budget import Convergence
from eossl.evaluation.context import Evaluation
from eossl.evaluation.data import EvalData
from eossl.evaluation.finetune import TensorBatches, train_task_model
from eossl.evaluation.results import RESULT_COLUMNS, SCHEMA_VERSION
from eossl.evaluation.runner import run_evaluate
from eossl.evaluation.sink import ResultSink, Setting
from eossl.evaluation.tasks._base import Task

TINY_TRAINING = {"min_steps": 3, "max_steps": 3, "batch_size": 16, "validations": 3, "patience": 0}


def _config(store, out, **extra) -> EvaluateConfig:
    raw = {
        "out": str(out),
        "data": {"store": str(store)},
        "inits": ["random", "image-stats"],
        "tasks": ["single-label", "multi-label", "segmentation", "regression"],
        "fractions": [0.25, 1.0],
        "seeds": [0, 1],
        "linear": {"weight_decays": [1e-2], "max_iter": 30},
        "knn": {"ks": [5]},
        "frozen": {"enabled": True, **TINY_TRAINING},
        "finetune": {"tasks": ["single-label", "segmentation"], **TINY_TRAINING},
        "adapter": {
            "enabled": True,
            "modes": ["spectral", "first-layers"],
            "tasks": ["regression"],
            "spectral_hidden": 4,
            "spectral_kernel": 3,
            **TINY_TRAINING,
        },
        "prediction_maps": 2,
        **extra,
    }
    return validate_config(EvaluateConfig, raw)


@pytest.mark.slow
def test_every_task_and_protocol_on_the_same_subsets(small_store, tmp_path):
    cfg = _config(small_store, tmp_path / "ev")
    results = run_evaluate(cfg, log=lambda _: None)
    out = tmp_path / "ev"
    saved = pd.read_csv(out / "results.csv")
    assert list(saved.columns) == RESULT_COLUMNS and set(saved.schema_version) == {SCHEMA_VERSION}
    assert len(saved) == len(results)
    protocols = saved.groupby("task").protocol.unique().map(set).to_dict()
    assert protocols["single-label"] == {"linear", "knn", "frozen", "finetune"}
    assert protocols["multi-label"] == {"linear", "knn", "frozen"}
    assert protocols["segmentation"] == {"frozen", "finetune"}  # dense: trained protocols only
    assert protocols["regression"] == {"linear", "frozen", "adapter-spectral", "adapter-first-1"}
    assert set(saved[saved.protocol.isin(["frozen", "finetune", "adapter-spectral"])].init) == {"random"}
    # primary metrics exist for every task and are in range; every row names its task's kind
    assert (saved.kind == saved.task).all()  # the tasks were requested by kind
    for name in ("single-label", "multi-label", "segmentation", "regression"):
        values = saved[(saved.task == name) & (saved.metric == TASK_KINDS[name].primary)].value
        assert len(values) > 0 and values.notna().all()
    assert saved[saved.metric.isin(["accuracy", "mAP", "mIoU"])].value.between(0, 1).all()
    # trainable encoder parameters: 0 when frozen, everything when fine-tuned, a few hundred for the adapter
    params = saved.groupby("protocol").trainable_params.max()
    assert params["linear"] == params["knn"] == params["frozen"] == 0
    # spectral adapter, 4 channels, kernel 3: (4 x 3 + 4) + (4 x 3 + 1) = 29
    assert params["finetune"] > 1e6 and params["adapter-spectral"] == 29
    assert 0 < params["adapter-first-1"] < params["finetune"]
    # label subsets: saved, nested across fractions, every class held (class and class-presence strata)
    subsets = json.loads((out / "label_subsets.json").read_text())["subsets"]
    assert set(subsets) == {"label", "multilabel"}
    table = pd.read_csv(small_store / "metadata.csv")
    for stratum, by_fraction in subsets.items():
        for seed in ("0", "1"):
            small, full = set(by_fraction["0.25"][seed]), set(by_fraction["1"][seed])
            assert small < full
            if stratum == "label":
                assert set(table.label.iloc[sorted(small)]) == set(table.label.iloc[sorted(full)])
    num_labels = saved[(saved.fraction == 0.25) & (saved.task == "segmentation")].num_labels.unique()
    assert list(num_labels) == [len(subsets["multilabel"]["0.25"]["0"])]
    # learning curves of the trained protocols
    curves = pd.read_csv(out / "curves.csv")
    assert set(curves.protocol) == {"frozen", "finetune", "adapter-spectral", "adapter-first-1"}
    assert (curves.groupby(["protocol", "task", "fraction", "seed"]).size() == 3).all()
    # report: markdown, self-contained HTML, plots including segmentation prediction maps
    report = (out / "report.md").read_text()
    assert "## Overview at 25% labels" in report and "| finetune (11.2M) | random |" in report
    assert "## segmentation: mIoU" in report and "prediction_maps_segmentation.png" in report
    for figure in ("label_efficiency.png", "convergence.png", "prediction_maps_segmentation.png"):
        assert (out / figure).stat().st_size > 1000
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "<table>" in html
    # cached features equal recomputed ones (a fresh random init, built through the init registry)
    data = EvalData(cfg)
    evaluation = Evaluation(cfg, data, None, ResultSink(tmp_path / "again", 0, 0), torch.device("cpu"))
    run = INITS["random"](cfg, {}).start(Setting(("s2",)), evaluation)
    fresh = run.featurize(data.inputs("val", ("s2",)))
    cached = [p for p in (out / "features").iterdir() if p.name.startswith("random-val-")]
    assert len(cached) == 1 and torch.allclose(torch.load(cached[0], weights_only=True), fresh, atol=1e-5)


def test_plan_errors_before_any_work(small_store, tmp_path):
    from eossl.config import ConfigError

    with pytest.raises(ConfigError, match="task 'segmentation' is dense"):
        run_evaluate(_config(small_store, tmp_path / "a", frozen={"enabled": False}, finetune={"enabled": False},
                             adapter={"enabled": False}))  # fmt: skip
    with pytest.raises(ConfigError, match=r"needs attention blocks.*resnet18"):
        run_evaluate(_config(small_store, tmp_path / "b", adapter={"enabled": True, "modes": ["lora"]}))
    with pytest.raises(ConfigError, match="spectral_kernel must be odd"):
        _config(small_store, tmp_path / "d", adapter={"spectral_kernel": 4})
    with pytest.raises(ConfigError, match=r"external\.weights_file"):
        run_evaluate(_config(small_store, tmp_path / "c", inits=["external"]))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("stop_after", [0.0, 0.5])
def test_early_stopping_waits_for_its_floor_and_restores_the_best_round(stop_after):
    torch.manual_seed(0)
    modality = Modality(name="s2", kind="optical", bands=("a", "b"), dtype="float32", gsd_m=(10.0, 10.0))
    from eossl.data.normalize import BandNormalizer
    from eossl.models.encoders import build_encoder

    encoder = build_encoder("resnet18", 2)
    stats = {"mean": [0.0, 0.0], "std": [1.0, 1.0]}
    normalizer = BandNormalizer({"s2": stats}, ["s2"])
    x, y = torch.randn(32, 2, 16, 16), torch.randint(0, 3, (32,))
    frozen = {"min_steps": 40, "max_steps": 40, "batch_size": 8, "validations": 20, "patience": 2, "lr": 1e-9,
              "stop_after": stop_after}  # fmt: skip
    cfg = validate_config(EvaluateConfig, {"data": {"store": "x"}, "frozen": frozen}).frozen
    task = Task("single-label", TASK_KINDS["single-label"](), Target("label", "single-label", column="label"), 3)
    data = TensorBatches(x, {"label": y})
    result = train_task_model(encoder, normalizer, modality, task, data, data, cfg, "frozen")
    # lr ~ 0: the validation metric cannot improve after the first round (rounds every 2 steps), so training
    # stops after 1 + patience rounds when it may stop anywhere, and at its floor (half of 40 steps) otherwise;
    # either way long before 40 steps, and the first round's weights are kept
    expected = {0.0: 6, 0.5: 20}[stop_after]
    assert result.steps == expected and len(result.history) == expected // 2 and result.best_step == 2
    assert result.run.budget_steps == 40 and result.run.convergence == Convergence("early", True)
    assert result.trainable_encoder_params == 0 and result.head_params == 512 * 3 + 3
    assert np.allclose([h["value"] for h in result.history], result.history[0]["value"])
    # the frozen protocol keeps the encoder's weights and BatchNorm statistics; the source is untouched
    trained = result.model.encoder
    assert torch.equal(trained.model.bn1.running_mean, encoder.model.bn1.running_mean)
    assert torch.equal(trained.model.layer1[0].conv1.weight, encoder.model.layer1[0].conv1.weight)
    assert all(p.requires_grad for p in encoder.parameters())


def test_external_weights_are_one_more_init(small_store, tmp_path):
    """An ImageNet-style timm weights file (3 bands, 1000 classes) becomes an init of the same architecture."""
    import timm
    from safetensors.torch import save_file

    weights = tmp_path / "resnet18_imagenet_style.safetensors"
    save_file(timm.create_model("resnet18", num_classes=1000, pretrained=False).state_dict(), str(weights))
    cfg = _config(
        small_store, tmp_path / "ev", inits=["external", "random"], tasks=["single-label"], fractions=[1.0],
        seeds=[0], external={"weights_file": str(weights), "label": "imagenet"},
        frozen={"enabled": False}, adapter={"enabled": False}, finetune={"enabled": False},
    )  # fmt: skip
    results = run_evaluate(cfg, log=lambda _: None)
    assert set(results.init) == {"imagenet", "random"}
    imagenet = results[(results.init == "imagenet") & (results.protocol == "linear") & (results.metric == "accuracy")]
    random = results[(results.init == "random") & (results.protocol == "linear") & (results.metric == "accuracy")]
    assert imagenet.value.iloc[0] != random.value.iloc[0]  # different weights, different features
    assert "| linear | imagenet vs random |" not in (tmp_path / "ev" / "report.md").read_text()  # both baselines


def test_lora_and_first_layers_on_a_vit(small_store, tmp_path):
    cfg = _config(
        small_store, tmp_path / "ev", inits=["random"], tasks=["single-label", "segmentation"], fractions=[1.0],
        seeds=[0], encoder={"name": "vit_tiny_patch16_224", "patch_size": 8},
        linear={"enabled": False}, knn={"enabled": False}, frozen={"enabled": False}, finetune={"enabled": False},
        adapter={"enabled": True, "modes": ["lora", "first-layers"], "first_layers": 2, **TINY_TRAINING},
    )  # fmt: skip
    results = run_evaluate(cfg, log=lambda _: None)
    params = results.groupby("protocol").trainable_params.max()
    # LoRA rank 8 on 12 qkv projections of width 192: 12 x (192 x 8 + 8 x 576) = 73,728
    assert params["adapter-lora"] == 73_728
    assert params["adapter-first-2"] > 0 and set(results.task) == {"single-label", "segmentation"}


@pytest.mark.slow
def test_lora_on_a_pretrained_vit_checkpoint(small_store, tmp_path):
    """The checkpoint decides the architecture: LoRA is accepted for an MAE ViT whatever `encoder.name` says."""
    from eossl.config import PretrainConfig
    from eossl.methods.pretrain import run_pretrain

    pretrain = validate_config(
        PretrainConfig,
        {
            "out": str(tmp_path / "mae"),
            "data": {"store": str(small_store), "batch_size": 16},
            "method": {"name": "mae", "decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2},
            "encoder": {"name": "vit_tiny_patch16_224", "patch_size": 8},
            "trainer": {"max_steps": 1, "progress_bar": False},
            "health": {"knn_every_n_steps": 0, "knn_bank_size": 64, "knn_query_size": 32},
        },
    )
    checkpoint = run_pretrain(pretrain)
    cfg = _config(
        small_store, tmp_path / "ev", checkpoint=str(checkpoint), inits=["checkpoint"], tasks=["single-label"],
        fractions=[1.0], seeds=[0], linear={"enabled": False}, knn={"enabled": False}, frozen={"enabled": False},
        finetune={"enabled": False}, adapter={"enabled": True, "modes": ["lora"], **TINY_TRAINING},
    )  # fmt: skip
    results = run_evaluate(cfg, log=lambda _: None)
    assert set(results.init) == {"mae"} and set(results.trainable_params) == {73_728}
