"""Checkpoints written by `eossl pretrain` reload through :mod:`eossl.checkpoints`; unsafe or broken files
are refused (naming the file) before anything in them runs or any training starts."""

from __future__ import annotations

import os

import pytest
import torch
import yaml
from typer.testing import CliRunner

from eossl.checkpoints import METADATA_KEY, load_pretrained_encoder, load_pretrained_encoders, read_checkpoint
from eossl.cli.main import app
from eossl.config import DataConfig, PretrainConfig
from eossl.errors import CheckpointError
from eossl.methods.pretrain import run_pretrain

runner = CliRunner()
TINY = {"name": "test_resnet", "img_size": 32}
RUNS = {
    "simclr": ({"name": "simclr", "hidden_dim": 32, "projection_dim": 16}, None),
    "dino": ({"name": "dino", "hidden_dim": 32, "bottleneck_dim": 16, "output_dim": 64}, None),
    "dual-simclr-separate": ({"name": "dual-simclr", "hidden_dim": 32, "projection_dim": 16}, ["s2", "s1"]),
    "dual-simclr-shared": (
        {"name": "dual-simclr", "encoders": "shared", "hidden_dim": 32, "projection_dim": 16},
        ["s2", "s1"],
    ),
}


def _pretrain(tmp_path, store, run: str):
    method, modalities = RUNS[run]
    cfg = PretrainConfig(
        out=tmp_path / run,
        data=DataConfig(store=store, batch_size=16, modalities=modalities),
        encoder=TINY,
        method=method,
        augment={"local_views": 2, "local_crop_size": 16} if method["name"] == "dino" else {},
        trainer={"max_steps": 1, "progress_bar": False},
        health={"knn_every_n_steps": 0, "knn_bank_size": 32, "knn_query_size": 16},
    )
    return run_pretrain(cfg)


@pytest.fixture(scope="module")
def simclr_checkpoint(small_store, tmp_path_factory):
    return _pretrain(tmp_path_factory.mktemp("ckpt"), small_store, "simclr")


@pytest.mark.parametrize("run", list(RUNS))
def test_checkpoints_reload_their_exported_encoders(small_store, tmp_path, simclr_checkpoint, run):
    ckpt = simclr_checkpoint if run == "simclr" else _pretrain(tmp_path, small_store, run)
    raw = read_checkpoint(ckpt)
    meta, state = raw[METADATA_KEY], raw["state_dict"]
    encoders = load_pretrained_encoders(ckpt)
    assert list(encoders) == list(meta["encoders"]) and meta["method"] == RUNS[run][0]["name"]
    prefixes = {
        "simclr": {"s2": "encoder."},
        "dino": {"s2": "teacher_encoder."},
        "dual-simclr-separate": {"s2": "encoders.s2.", "s1": "encoders.s1."},
        "dual-simclr-shared": {"s2+s1": "fused_encoder."},
    }[run]
    if run == "dual-simclr-shared":
        assert list(encoders) == ["s2", "s1", "s2+s1"] and meta["encoders"]["s1"]["kind"] == "stem-of"
    else:
        assert list(encoders) == list(prefixes)
    for name, prefix in prefixes.items():
        for key, value in encoders[name].encoder.state_dict().items():
            assert torch.equal(value, state[prefix + key]), (name, key)
    if run == "dino":  # the teacher is exported, not the student (one optimiser step apart)
        student = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
        assert any(not torch.equal(v, student[k]) for k, v in encoders["s2"].encoder.state_dict().items())
    for name, pretrained in encoders.items():
        assert pretrained.modality == name and not pretrained.encoder.training
        x = torch.zeros(2, pretrained.encoder.in_chans, 32, 32)
        assert pretrained.encoder(x).shape == (2, pretrained.encoder.num_features)
    assert load_pretrained_encoder(ckpt).modality == "s2"


class Payload:
    """Pickles as a call to ``os.system``: loading it unsafely would run the command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _bad_files(tmp_path, real_checkpoint) -> dict[str, tuple[object, str]]:
    """name -> (path, expected message) of files that must be refused."""
    sentinel = tmp_path / "SENTINEL"
    files = {}
    crafted = tmp_path / "crafted.ckpt"
    torch.save(
        {"state_dict": {}, "hyper_parameters": {"config": Payload(f"touch {sentinel}")}, METADATA_KEY: {"format": 2}},
        crafted,
    )
    files["crafted"] = (crafted, "was refused: it holds objects that would run code")
    noise = tmp_path / "noise.ckpt"
    noise.write_bytes(os.urandom(4096))
    files["random-bytes"] = (noise, "is damaged or not a PyTorch checkpoint")
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    files["empty"] = (empty, "is empty")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(real_checkpoint.read_bytes()[: real_checkpoint.stat().st_size // 2])
    files["truncated"] = (truncated, "is damaged or not a PyTorch checkpoint")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    files["not-eossl"] = (foreign, "was not written by 'eossl pretrain'")
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    files["a-tensor"] = (tensor, "holds a Tensor, not a checkpoint dictionary")
    files["missing"] = (tmp_path / "nowhere.ckpt", "does not exist")
    return files


KINDS = ["crafted", "random-bytes", "empty", "truncated", "not-eossl", "a-tensor", "missing"]


@pytest.mark.parametrize("kind", KINDS)
def test_unsafe_or_broken_checkpoints_are_refused_by_the_loader(tmp_path, simclr_checkpoint, kind):
    path, message = _bad_files(tmp_path, simclr_checkpoint)[kind]
    with pytest.raises(CheckpointError) as error:
        load_pretrained_encoder(path)
    text = str(error.value)
    assert f"'{path}'" in text and message in text and "\n" not in text
    assert not (tmp_path / "SENTINEL").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_unsafe_or_broken_checkpoints_are_refused_on_resume_before_training(
    small_store, tmp_path, simclr_checkpoint, kind
):
    path, message = _bad_files(tmp_path, simclr_checkpoint)[kind]
    config = tmp_path / "resume.yaml"
    out = tmp_path / "run"
    config.write_text(
        yaml.safe_dump(
            {
                "out": str(out),
                "data": {"store": str(small_store), "batch_size": 16},
                "encoder": TINY,
                "trainer": {"max_steps": 2, "progress_bar": False},
                "resume": str(path),
            }
        )
    )
    result = runner.invoke(app, ["pretrain", str(config)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: 'resume': ") and str(path) in lines[0], result.output
    assert message in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "SENTINEL").exists() and not out.exists()


def test_random_bytes_are_reported_as_damaged_not_as_code(tmp_path, simclr_checkpoint):
    path, _ = _bad_files(tmp_path, simclr_checkpoint)["random-bytes"]
    with pytest.raises(CheckpointError, match="is damaged or not a PyTorch checkpoint") as error:
        read_checkpoint(path)
    assert "weights_only" not in str(error.value)


def test_the_crafted_checkpoint_would_run_code_if_loaded_unsafely(tmp_path, simclr_checkpoint):
    """The control for the two tests above: the payload is real (it runs a harmless ``touch``)."""
    path, _ = _bad_files(tmp_path, simclr_checkpoint)["crafted"]
    torch.load(path, weights_only=False)
    assert (tmp_path / "SENTINEL").exists()


def test_resume_refuses_a_checkpoint_of_another_method(small_store, tmp_path, simclr_checkpoint):
    cfg = PretrainConfig(
        out=tmp_path / "run",
        data=DataConfig(store=small_store, batch_size=16),
        encoder=TINY,
        method={"name": "byol"},
        trainer={"max_steps": 2, "progress_bar": False},
        resume=simclr_checkpoint,
    )
    with pytest.raises(CheckpointError, match=r"was written by method 'simclr'; this run trains 'byol'"):
        run_pretrain(cfg)
    assert not (tmp_path / "run").exists()
