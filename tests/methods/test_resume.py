"""Crash-safe pretraining: periodic atomic checkpoints, ``resume=auto`` after ``kill -9`` ends where an
uninterrupted run ends, logs are kept, a finished run is left alone, a used folder is locked."""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from eossl.checkpoints import read_checkpoint
from eossl.config import PretrainConfig
from eossl.errors import CheckpointError, EosslError
from eossl.io import OutputFolderError, OutputLock
from eossl.methods.checkpointing import AtomicCheckpointIO
from eossl.methods.pretrain import run_pretrain

STEPS = 12


def _config(store: Path, out: Path, **trainer) -> dict:
    return {
        "out": str(out),
        "seed": 5,
        "data": {"store": str(store), "batch_size": 16, "num_workers": 0},
        "encoder": {"name": "resnet18", "output_stride": 32},
        "method": {"name": "simclr", "hidden_dim": 32, "projection_dim": 16},
        "trainer": {
            "max_steps": STEPS,
            "progress_bar": False,
            "log_every_n_steps": 1,
            "precision": "32-true",
            "checkpoint_every_n_steps": 2,
            **trainer,
        },
        "health": {"every_n_steps": 3, "knn_every_n_steps": 6, "knn_bank_size": 64, "knn_query_size": 32},
    }


def _losses(out: Path) -> dict[int, str]:
    with open(out / "logs" / "metrics.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("train/loss")]
    steps = [int(r["step"]) for r in rows]
    assert len(steps) == len(set(steps)), "a step was logged twice"
    return {int(r["step"]): r["train/loss"] for r in rows}


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(out / "checkpoints" / "last.ckpt")["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(small_store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("resume") / "plain"
    run_pretrain(PretrainConfig.model_validate(_config(small_store, out)))
    return out


def test_a_run_killed_mid_training_resumes_to_the_same_weights_and_log(small_store, uninterrupted, tmp_path):
    out = tmp_path / "killed"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({**_config(small_store, out), "resume": "auto"}))
    command = [str(Path(sys.executable).parent / "eossl"), "pretrain", str(config)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
    killed_at = read_checkpoint(last)["global_step"]
    assert 2 <= killed_at < STEPS and not (out / "summary.json").exists()

    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    plain, resumed = _weights(uninterrupted), _weights(out)
    assert plain.keys() == resumed.keys()
    for key in plain:
        assert torch.equal(plain[key], resumed[key]), key
    assert _losses(out) == _losses(uninterrupted)  # every step once, the same values: the log was continued
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == STEPS and [s["from_step"] for s in summary["sessions"]] == [0, killed_at]
    assert not list(last.parent.glob(".*tmp*"))  # what a write cut off by the kill left was removed
    assert summary["final_loss"] == json.loads((uninterrupted / "summary.json").read_text())["final_loss"]


def test_resuming_a_finished_run_changes_nothing(small_store, uninterrupted, capsys):
    before = {p: p.read_bytes() for p in (uninterrupted / "summary.json", uninterrupted / "logs" / "metrics.csv")}
    cfg = PretrainConfig.model_validate({**_config(small_store, uninterrupted), "resume": "auto"})
    assert run_pretrain(cfg) == uninterrupted / "checkpoints" / "last.ckpt"
    assert "is complete" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in before} == before


def test_resume_auto_without_a_checkpoint_starts_the_run(small_store, tmp_path, capsys):
    cfg = PretrainConfig.model_validate({**_config(small_store, tmp_path / "new", max_steps=2), "resume": "auto"})
    run_pretrain(cfg)
    assert "starting the run" in capsys.readouterr().out
    assert json.loads((tmp_path / "new" / "summary.json").read_text())["steps"] == 2


def test_a_checkpoint_of_other_bands_is_refused_before_training(small_store, uninterrupted, tmp_path):
    ckpt = read_checkpoint(uninterrupted / "checkpoints" / "last.ckpt")
    ckpt["eossl"]["modalities"][0]["bands"] = ckpt["eossl"]["modalities"][0]["bands"][:6]
    other = tmp_path / "six-bands.ckpt"
    torch.save(ckpt, other)
    cfg = PretrainConfig.model_validate({**_config(small_store, tmp_path / "run"), "resume": str(other)})
    with pytest.raises(CheckpointError, match=r"six-bands.ckpt' trained 's2' on 6 bands .*the store's 's2' has 12"):
        run_pretrain(cfg)
    assert not (tmp_path / "run" / "logs").exists()


def test_a_second_run_into_a_folder_in_use_is_refused(small_store, tmp_path):
    out = tmp_path / "busy"
    cfg = PretrainConfig.model_validate(_config(small_store, out, max_steps=2))
    lock = OutputLock(out, "eossl evaluate")
    with lock, pytest.raises(OutputFolderError, match=r"busy' is in use by eossl evaluate \(pid \d+"):
        run_pretrain(cfg)
    assert not (out / "checkpoints").exists()


def test_an_output_folder_that_cannot_be_written_is_refused_before_work(small_store, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cfg = PretrainConfig.model_validate(_config(small_store, blocker / "run", max_steps=2))
    with pytest.raises(EosslError, match=r"'out': cannot write into '.*a-file/run'"):
        run_pretrain(cfg)


def test_a_full_disk_at_the_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": torch.tensor(1)}, path)
    original = path.read_bytes()

    def full_disk(obj, handle, *args, **kwargs):
        handle.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OutputFolderError, match=r"last.ckpt' failed \(No space left on device\); the previous"):
        io.save_checkpoint({"step": torch.tensor(2)}, path)
    assert path.read_bytes() == original
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left behind
