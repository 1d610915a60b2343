"""An eossl-exported encoder as the backbone of TorchGeo's trainers (the optional ``eossl[torchgeo]``
extra): ``weights="EXPORT/torchgeo_backbone.ckpt"`` is read by TorchGeo's own loader, and one training
step of each trainer runs on it."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Dataset

from eossl.config import DataConfig, PretrainConfig
from eossl.deploy.export import ExportRequest, export_encoder
from eossl.methods.pretrain import run_pretrain

trainers = pytest.importorskip("torchgeo.trainers", reason="TorchGeo is the optional extra eossl[torchgeo]")


class _Patches(Dataset):
    """Eight 12-band patches with a class label and a 2-class mask, as TorchGeo's trainers read batches."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(i)
        return {"image": torch.randn(12, 32, 32, generator=g), "label": torch.tensor(i % 3),
                "mask": torch.randint(0, 2, (32, 32), generator=g)}  # fmt: skip


@pytest.fixture(scope="module")
def export(small_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("torchgeo")
    cfg = PretrainConfig(
        out=root / "run", data=DataConfig(store=small_store, batch_size=16), encoder={"name": "resnet18"},
        method={"name": "simclr", "hidden_dim": 32, "projection_dim": 16},
        trainer={"max_steps": 1, "progress_bar": False},
        health={"knn_every_n_steps": 0, "knn_bank_size": 32, "knn_query_size": 16},
    )  # fmt: skip
    run_pretrain(cfg)
    result = export_encoder(ExportRequest(root / "run", root / "export"))
    assert "torchgeo_backbone.ckpt" in result.files
    return root / "export"


def _fit_one_step(task: L.LightningModule) -> None:
    loader = DataLoader(_Patches(), batch_size=4)
    trainer = L.Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(task, train_dataloaders=loader, val_dataloaders=loader)


def test_classification_task_takes_the_exported_backbone(export):
    weights = load_file(str(export / "model.safetensors"))
    task = trainers.ClassificationTask(model="resnet18", weights=str(export / "torchgeo_backbone.ckpt"),
                                       in_channels=12, task="multiclass", num_classes=3)  # fmt: skip
    for name in ("conv1.weight", "layer1.0.conv1.weight", "layer4.1.bn2.running_var"):
        assert torch.equal(task.model.state_dict()[name], weights[name])
    _fit_one_step(task)


def test_segmentation_task_takes_the_exported_backbone(export):
    weights = load_file(str(export / "model.safetensors"))
    task = trainers.SemanticSegmentationTask(model="unet", backbone="resnet18", in_channels=12, task="multiclass",
                                             num_classes=2, weights=str(export / "torchgeo_backbone.ckpt"))  # fmt: skip
    encoder = task.model.encoder.state_dict()
    assert all(torch.equal(encoder[name], value) for name, value in weights.items())
    _fit_one_step(task)
