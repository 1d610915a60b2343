"""Pretraining over several processes (Lightning DDP, CPU/gloo): the same step as one process, end to end.

Lightning's ``ddp`` launcher re-runs ``sys.argv`` for every rank, which inside pytest would re-run pytest,
so every multi-process run here is a subprocess: the helper script ``distributed_worker.py`` or the
``eossl`` CLI, with ``MASTER_ADDR=127.0.0.1`` and a free local port (no network).
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from eossl.config import PretrainConfig, validate_config
from eossl.errors import ConfigError
from eossl.methods.distributed import GatheredBatchNorm, GatheredSyncBatchNorm
from eossl.methods.pretrain import run_pretrain

from .distributed_worker import GLOBAL_BATCH, run

WORKER = Path(__file__).with_name("distributed_worker.py")
EOSSL = Path(sys.executable).with_name("eossl")
# fp32 (precision 32-true); the two runs differ only in the order of floating-point sums
RTOL, ATOL = 1e-4, 1e-5
BF16_RTOL, BF16_ATOL = 1.6e-2, 4e-3  # features: bf16 keeps 8 bits of mantissa


def _env() -> dict[str, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}


def _launch(command: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result


def test_two_processes_take_the_same_step_as_one_over_the_same_global_batch(small_store, tmp_path):
    """SimCLR with ``sync_batchnorm`` and MoCo v2: loss and gradients of 2 processes = 1 process.

    One step from the same initial weights on the same 16 rows: one process takes all of them, each of
    two DDP processes takes 8 (rank r: rows r::2).
    Equal only if the negatives are gathered across processes (SimCLR's NT-Xent), the BatchNorm
    statistics are those of the global batch (``sync_batchnorm``, on CPU eossl's gathered BatchNorm) and
    DDP averages gradients of per-process means. Augmentation is off in both runs (see the worker):
    it draws per-process random numbers, so the views would differ otherwise. MoCo v2's queue must also
    be identical on both processes after the step and hold the keys of the whole global batch. Frozen
    features extracted after the step (data-parallel: each process encodes every other batch) equal the
    one-process features on every process.
    """
    methods = ["simclr", "moco-v2"]
    single, multi = tmp_path / "single", tmp_path / "multi"
    single.mkdir(), multi.mkdir()
    run(str(small_store), str(single), 1, methods)
    _launch([sys.executable, str(WORKER), str(small_store), str(multi), "2", *methods])
    for name in methods:
        one = torch.load(single / f"{name}.rank0.pt")
        ranks = [torch.load(multi / f"{name}.rank{r}.pt") for r in range(2)]
        torch.testing.assert_close(ranks[0]["loss"], one["loss"], rtol=RTOL, atol=ATOL)
        assert one["grads"].keys() == ranks[0]["grads"].keys() and len(one["grads"]) > 10
        for key, grad in one["grads"].items():
            for rank in ranks:  # DDP leaves the same averaged gradient on every process
                torch.testing.assert_close(rank["grads"][key], grad, rtol=RTOL, atol=ATOL, msg=f"{name}: {key}")
        # feature extraction is data-parallel: each process encodes its share, every one gets all rows
        features = torch.load(single / f"{name}.features.rank0.pt")
        assert features.shape[0] == GLOBAL_BATCH
        for r in range(2):  # encoded under bf16 autocast where the CPU has it: bf16 rounding of ~1e-6 apart weights
            extracted = torch.load(multi / f"{name}.features.rank{r}.pt")
            torch.testing.assert_close(extracted, features, rtol=BF16_RTOL, atol=BF16_ATOL)
    one, ranks = torch.load(single / "moco-v2.rank0.pt"), [torch.load(multi / f"moco-v2.rank{r}.pt") for r in (0, 1)]
    assert torch.equal(ranks[0]["queue"], ranks[1]["queue"])
    # the gathered keys are in rank order: those of rows 0, 2, 4, ..., then of rows 1, 3, 5, ...
    enqueued = torch.cat([one["queue"][0:GLOBAL_BATCH:2], one["queue"][1:GLOBAL_BATCH:2]])
    torch.testing.assert_close(ranks[0]["queue"][:GLOBAL_BATCH], enqueued, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(ranks[0]["queue"][GLOBAL_BATCH:], one["queue"][GLOBAL_BATCH:])


def test_cli_pretrains_with_two_ddp_processes_and_rank_zero_writes_one_checkpoint(small_store, tmp_path):
    cfg = {
        "out": str(tmp_path / "run"),
        "data": {"store": str(small_store), "batch_size": 8},
        "method": {"name": "simclr", "hidden_dim": 64, "projection_dim": 32},
        "trainer": {"max_steps": 3, "progress_bar": False, "log_every_n_steps": 1, "sync_batchnorm": True},
        "health": {"every_n_steps": 1, "knn_every_n_steps": 0, "knn_bank_size": 32, "knn_query_size": 16},
    }
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    overrides = ["trainer.devices=2", "trainer.strategy=ddp", "trainer.accelerator=cpu"]
    result = _launch([str(EOSSL), "pretrain", str(path), *overrides])
    out = tmp_path / "run"
    assert result.stdout.count("checkpoint:") == 2  # every rank returns the (rank 0) checkpoint's path
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["last.ckpt"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["world_size"] == 2 and summary["global_batch_size"] == 16
    written = yaml.safe_load((out / "config.yaml").read_text())["trainer"]
    assert written["devices"] == 2 and written["strategy"] == "ddp" and written["sync_batchnorm"] is True


def test_trainer_settings_are_checked(small_store, tmp_path):
    base = {"data": {"store": str(small_store)}}
    cfg = validate_config(PretrainConfig, {**base, "trainer": {"devices": 4, "num_nodes": 2, "strategy": "ddp"}})
    assert (cfg.trainer.devices, cfg.trainer.num_nodes, cfg.trainer.sync_batchnorm) == (4, 2, False)
    assert PretrainConfig(**base).trainer.devices == "auto"
    for bad, words in [
        ({"strategy": "fsdp", "accelerator": "cpu"}, "fsdp"),
        ({"strategy": "horovod"}, "strategy"),
        ({"devices": 0}, "devices"),
        ({"num_nodes": 0}, "num_nodes"),
    ]:
        with pytest.raises(ConfigError, match=words):
            validate_config(PretrainConfig, {**base, "trainer": bad})
    if not torch.cuda.is_available():  # accelerator auto, no GPU: refused before any work
        cfg = PretrainConfig(**base, out=tmp_path / "fsdp", trainer={"strategy": "fsdp"})
        with pytest.raises(ConfigError, match=r"fsdp.*CUDA"):
            run_pretrain(cfg)
        assert not (tmp_path / "fsdp").exists()


def test_gathered_batchnorm_replaces_and_restores_every_batchnorm():
    """On CPU ``sync_batchnorm`` swaps in GatheredBatchNorm (torch's SyncBatchNorm is GPU-only); in one
    process it computes what BatchNorm does, and reverting restores the original classes and state."""
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 8), nn.BatchNorm1d(8))
    model[4].weight.requires_grad_(False)
    x = torch.randn(6, 3, 4, 4)
    expected = copy.deepcopy(model)(x)
    synced = GatheredSyncBatchNorm().apply(copy.deepcopy(model))
    assert [type(m) for m in synced if isinstance(m, _BatchNorm)] == [GatheredBatchNorm, GatheredBatchNorm]
    assert not synced[4].weight.requires_grad
    torch.testing.assert_close(synced(x), expected)
    reverted = GatheredSyncBatchNorm().revert(synced)
    assert [type(m) for m in reverted if isinstance(m, _BatchNorm)] == [nn.BatchNorm2d, nn.BatchNorm1d]
    torch.testing.assert_close(reverted[1].running_mean, synced[1].running_mean)
    assert reverted.state_dict().keys() == model.state_dict().keys()
