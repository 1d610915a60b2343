"""``eossl export``: folders timm loads with its own ``local-dir:`` loader, giving eossl's features.

Tolerances: timm's rebuilt model runs the same weights through the same code, so features agree to
1e-5 (float32 on the CPU; the export's own check measures 0 here); onnxruntime's kernels differ from
PyTorch's, so ONNX features agree to 1e-4.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import eossl  # noqa: F401  (registers eossl_encoder with timm)
from eossl.checkpoints import load_pretrained_encoders
from eossl.cli.main import app
from eossl.config import DataConfig, PretrainConfig
from eossl.deploy.export import ExportRequest, export_encoder
from eossl.errors import CheckpointError, ConfigError
from eossl.methods.pretrain import run_pretrain

runner = CliRunner()
TIMM_TOLERANCE = 1e-5
ONNX_TOLERANCE = 1e-4
RUNS = {
    "cnn": ({"name": "test_resnet", "img_size": 32}, {"name": "simclr", "hidden_dim": 32, "projection_dim": 16}, None),
    "vit": ({"name": "test_vit", "img_size": 32, "patch_size": 8},
            {"name": "simclr", "hidden_dim": 32, "projection_dim": 16}, None),
    "detail": ({"name": "resnet18-detail", "img_size": 32},
                   {"name": "simclr", "hidden_dim": 32, "projection_dim": 16}, None),
    "cross-modal": ({"name": "test_resnet", "img_size": 32},
                    {"name": "dual-simclr", "encoders": "shared", "hidden_dim": 32, "projection_dim": 16},
                    ["s2", "s1"]),
}  # fmt: skip


@pytest.fixture(scope="module")
def runs(small_store, tmp_path_factory):
    """One tiny pretraining run per kind of encoder (run folders)."""
    root = tmp_path_factory.mktemp("pretrain")
    out = {}
    for name, (encoder, method, modalities) in RUNS.items():
        cfg = PretrainConfig(
            out=root / name, data=DataConfig(store=small_store, batch_size=16, modalities=modalities), encoder=encoder,
            method=method, trainer={"max_steps": 1, "progress_bar": False},
            health={"knn_every_n_steps": 0, "knn_bank_size": 32, "knn_query_size": 16},
        )  # fmt: skip
        run_pretrain(cfg)
        out[name] = root / name
    return out


def _batch(bands: int, n: int = 3) -> torch.Tensor:
    return torch.randn(n, bands, 32, 32, generator=torch.Generator().manual_seed(7))


def _eossl_features(run: Path, modality: str | None, x: torch.Tensor) -> torch.Tensor:
    encoders = load_pretrained_encoders(run / "checkpoints" / "last.ckpt")
    encoder = (encoders[modality] if modality else next(iter(encoders.values()))).encoder.eval()
    with torch.no_grad():
        return encoder(x)


def _timm_features(folder: Path, x: torch.Tensor) -> torch.Tensor:
    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize(("run", "modality", "needs_eossl"), [
    ("vit", None, False), ("detail", None, True), ("cross-modal", "s1", False), ("cross-modal", "s2+s1", True),
])  # fmt: skip
def test_exported_features_equal_eossl_features(runs, tmp_path, run, modality, needs_eossl):
    result = export_encoder(ExportRequest(runs[run], tmp_path / "export", modality=modality))
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    bands = int(config["model_args"]["in_chans"])
    x = _batch(bands)
    assert result.needs_eossl == needs_eossl == (config["architecture"] == "eossl_encoder")
    assert torch.allclose(_timm_features(tmp_path / "export", x), _eossl_features(runs[run], modality, x),
                          atol=TIMM_TOLERANCE)  # fmt: skip
    assert result.timm_max_abs_diff <= TIMM_TOLERANCE
    assert len(config["eossl"]["bands"]) == bands == len(config["pretrained_cfg"]["mean"])
    assert config["eossl"]["pretraining"]["method"] == RUNS[run][1]["name"]


def test_plain_timm_loads_the_cnn_without_eossl(runs, tmp_path):
    """A plain timm architecture is loaded by a Python process that never imports eossl."""
    export_encoder(ExportRequest(runs["cnn"], tmp_path / "export"))
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["architecture"] == "test_resnet" and config["model_args"]["output_stride"] == 16
    assert config["eossl"]["normalization"]["rule"].startswith("(x - mean) / std")
    x = _batch(12)
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    script = (
        "import sys, timm, torch\n"
        "from safetensors.torch import load_file, save_file\n"
        f"m = timm.create_model('local-dir:{tmp_path / 'export'}', pretrained=True).eval()\n"
        f"x = load_file('{tmp_path / 'x.safetensors'}')['x']\n"
        f"save_file({{'y': m(x).detach()}}, '{tmp_path / 'y.safetensors'}')\n"
        "assert not any(name.startswith('eossl') for name in sys.modules), 'eossl was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, timeout=120)
    got = load_file(str(tmp_path / "y.safetensors"))["y"]
    assert torch.allclose(got, _eossl_features(runs["cnn"], None, x), atol=TIMM_TOLERANCE)


def test_onnx_export_matches_pytorch_in_onnxruntime(runs, tmp_path):
    import onnxruntime

    result = export_encoder(ExportRequest(runs["cnn"], tmp_path / "export", format="onnx"))
    assert result.onnx_max_abs_diff is not None and result.onnx_max_abs_diff <= ONNX_TOLERANCE
    session = onnxruntime.InferenceSession(str(tmp_path / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    for n in (1, 5):  # the batch axis is dynamic
        x = _batch(12, n)
        got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
        assert got.shape[0] == n
        assert torch.allclose(got, _eossl_features(runs["cnn"], None, x), atol=ONNX_TOLERANCE)
    card = (tmp_path / "export" / "README.md").read_text()
    assert "## ONNX" in card and "onnxruntime" in card


def test_model_card_says_how_to_load_and_what_goes_in(runs, tmp_path):
    export_encoder(ExportRequest(runs["detail"], tmp_path / "export"))
    card = (tmp_path / "export" / "README.md").read_text()
    assert f'timm.create_model("local-dir:{tmp_path / "export"}", pretrained=True)' in card and "import eossl" in card
    assert "| B8A | s2 | 865 |" in card and "physical = (stored + 0) / 10000" in card
    assert "pretrained with **simclr**" in card


def test_model_card_holds_the_evaluation_table(runs, small_store, tmp_path):
    from eossl.evaluation.config import EvaluateConfig
    from eossl.evaluation.runner import run_evaluate

    cfg = EvaluateConfig(out=tmp_path / "eval", data={"store": small_store}, checkpoint=runs["cnn"] / "checkpoints" /
                         "last.ckpt", inits=["checkpoint"], tasks=["single-label"], fractions=[1.0], seeds=[0],
                         frozen={"enabled": False}, finetune={"enabled": False}, linear={"enabled": False})  # fmt: skip
    run_evaluate(cfg, log=lambda line: None)
    args = ["export", str(runs["cnn"]), str(tmp_path / "export"), "--report", str(tmp_path / "eval")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    card = (tmp_path / "export" / "README.md").read_text()
    assert "## Evaluation" in card and "| knn | simclr |" in card


def test_the_export_is_an_init_for_evaluation(runs, tmp_path):
    export_encoder(ExportRequest(runs["cnn"], tmp_path / "export"))
    (pretrained,) = load_pretrained_encoders(tmp_path / "export").values()
    x = _batch(12)
    with torch.no_grad():
        assert torch.allclose(pretrained.encoder(x), _eossl_features(runs["cnn"], None, x), atol=TIMM_TOLERANCE)
    assert pretrained.method == "simclr" and [m.name for m in pretrained.bands] == ["s2"]
    assert set(pretrained.stats) >= {"mean", "std"}


def test_bad_requests_get_clear_errors(runs, tmp_path):
    with pytest.raises(ConfigError, match=r"has no encoder for modality 'dem'.*it has: s2, s1, s2\+s1"):
        export_encoder(ExportRequest(runs["cross-modal"], tmp_path / "a", modality="dem"))
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, foreign)
    with pytest.raises(CheckpointError, match=r"foreign\.ckpt' was not written by 'eossl pretrain'"):
        export_encoder(ExportRequest(foreign, tmp_path / "b"))
    (tmp_path / "noise.ckpt").write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match=r"noise\.ckpt' is damaged or not a PyTorch checkpoint"):
        export_encoder(ExportRequest(tmp_path / "noise.ckpt", tmp_path / "c"))
    with pytest.raises(CheckpointError, match="is not a pretraining run folder"):
        export_encoder(ExportRequest(tmp_path, tmp_path / "d"))
    export_encoder(ExportRequest(runs["cnn"], tmp_path / "e"))
    with pytest.raises(ConfigError, match="already exists: choose another output or pass --overwrite"):
        export_encoder(ExportRequest(runs["cnn"], tmp_path / "e"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "config.json").write_text(json.dumps({"architecture": "resnet18"}))
    with pytest.raises(CheckpointError, match="was not written by eossl"):
        load_pretrained_encoders(tmp_path / "f")
    result = runner.invoke(app, ["export", str(runs["cnn"]), str(tmp_path / "g"), "--format", "tflite"])
    assert result.exit_code == 2 and "--format: expected timm or onnx" in result.output
