"""The dense studies (segmentation, change detection, hyperspectral) run end to end on their test presets
through the command line, write their tables, and resume without redoing finished stages; ``eossl bench
--dense`` times encoder x decoder steps."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from eossl.cli.main import app

runner = CliRunner()


def _study(name: str, out) -> str:
    result = runner.invoke(app, ["study", name, "--out", str(out), "--preset", "test"])
    assert result.exit_code == 0, result.output
    return (out / "study.md").read_text()


def test_segmentation_study_writes_the_talks_table(tmp_path):
    text = _study("segmentation", tmp_path / "seg")
    assert "| Decoder | Encoder | Init | Overall accuracy | Mean IoU |" in text
    assert "| UNet | ResNet-18 | SimCLR |" in text and "| UpConv | ViT-S | Random |" in text
    assert "| ResNet-18 detail | boundary-weighted | Random |" in text and "Boundary F1" in text
    assert (tmp_path / "seg" / "eval-unet-resnet18-simclr" / "prediction_maps_mask.png").exists()


def test_change_study_compares_fusions_and_inits(tmp_path):
    text = _study("change", tmp_path / "change")
    assert "| Fusion | Init | Labels | F1 | Precision | Recall | IoU |" in text
    assert "| FC-Siam-diff | SeCo | 50% |" in text and "| Early fusion | Random | 100% |" in text
    assert "## Labels saved" in text
    again = runner.invoke(app, ["study", "change", "--out", str(tmp_path / "change"), "--preset", "test"])
    assert again.exit_code == 0 and "pretraining" not in again.output and "evaluating" not in again.output


def test_hyperspectral_study_lists_protocols_with_trainable_parameters(tmp_path):
    text = _study("hyperspectral", tmp_path / "hsi")
    assert "| Spec. ResNet | Wavelength ViT-S |" in text
    assert "| Frozen encoder (0, 0) | MoCo-v2 |" in text and "Fine-tune adapter (" in text


def test_unknown_preset_is_refused(tmp_path):
    result = runner.invoke(app, ["study", "change", "--out", str(tmp_path), "--preset", "huge"])
    assert result.exit_code != 0 and "--preset 'huge' is not one of" in result.output


@pytest.mark.parametrize("pair", ["resnet18:unet", "vit_small_patch16_224:upconv"])
def test_dense_bench_reports_throughput_and_memory(pair):
    result = runner.invoke(app, ["bench", "--dense", "--quick", "--pair", pair, "--bands", "4"])
    assert result.exit_code == 0, result.output
    encoder, decoder = pair.split(":")
    line = next(line for line in result.output.splitlines() if line.startswith(f"{encoder} + {decoder}"))
    assert "samples/s" in line and line.endswith("MiB")
