"""Every method of the zoo: its loss goes down on a toy batch, shapes and devices, checkpoint round trip."""

from dataclasses import asdict

import numpy as np
import pytest
import torch

from eossl.config import DataConfig, PretrainConfig
from eossl.data.store import SampleStore
from eossl.errors import ConfigError, EncoderError
from eossl.methods import METHODS
from eossl.models.encoders import build_encoder

# small heads keep the suite fast; the methods' own defaults are exercised by the CLI tests
SMALL = {
    "simclr": {"hidden_dim": 64, "projection_dim": 32},
    "moco-v2": {"hidden_dim": 64, "projection_dim": 32, "queue_size": 256},
    "moco-v3": {"hidden_dim": 64, "projection_dim": 32},
    "byol": {"hidden_dim": 64, "projection_dim": 32},
    "simsiam": {"projection_dim": 64, "prediction_hidden_dim": 16},
    "dino": {"hidden_dim": 64, "bottleneck_dim": 32, "output_dim": 256},
    "barlow-twins": {"hidden_dim": 128, "projection_dim": 128},
    "vicreg": {"hidden_dim": 128, "projection_dim": 128},
    "swav": {"hidden_dim": 64, "projection_dim": 32, "prototypes": 16},
    "mae": {"decoder_dim": 32, "decoder_depth": 1},
    "seco": {"hidden_dim": 64, "projection_dim": 32, "queue_size": 256},
}
# methods trained on data.modality; the cross-modal ones (data.modalities) are tested in test_cross_modal.py
SINGLE_MODALITY = [name for name, method in METHODS.items() if not method.config.cross_modal]


def _method(store_path, name="simclr", method=None, **overrides):
    store = SampleStore(store_path)
    section = {"name": name, **(SMALL[name] if method is None else method)}
    encoder = {**({"img_size": 32} if name == "mae" else {}), **overrides.pop("encoder", {})}
    cfg = PretrainConfig(data=DataConfig(store=store_path), method=section, encoder=encoder, **overrides)
    model = METHODS[name](cfg.model_dump(mode="json"), [asdict(store.modalities["s2"])], {"s2": store.stats["s2"]})
    model.log = lambda *a, **k: None
    return model, _batch(store)


def _batch(store, rows=np.arange(32)):
    """Rows of the store, and as ``s2@1``, ``s2@2`` two other seasons of their places (4 per place, in order)."""
    seasons = len(store.table.season.unique())
    batch = {}
    for k in range(3):
        other = rows // seasons * seasons + (rows + k) % seasons
        batch[f"s2@{k}" if k else "s2"] = torch.from_numpy(store.read("s2", other).astype(np.float32) / 10000)
    return batch


def _train(model, batch, lr, steps):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for step in range(steps):
        loss = model.training_step(batch, step)
        optimizer.zero_grad()
        loss.backward()
        model.on_after_backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def test_every_method_is_registered_with_a_config():
    assert set(METHODS) == {
        "simclr", "moco-v2", "moco-v3", "byol", "simsiam", "dino", "barlow-twins", "vicreg", "swav", "mae", "seco",
        "dual-simclr", "mma",
    }  # fmt: skip


@pytest.mark.parametrize("name", SINGLE_MODALITY)
def test_loss_decreases_on_a_toy_batch(small_store, name, monkeypatch):
    """Training lowers the loss: below the first step's, and below a paired run with lr=0.

    The lr=0 run draws the same views and masks, so it isolates what the gradient steps did from the
    method's own drift (DINO's centre, momentum targets). MoCo v2's and SeCo's queues are frozen here:
    on one repeated batch the queue would fill with copies of the positives.
    """
    if name in ("moco-v2", "seco"):
        monkeypatch.setattr(METHODS[name], "enqueue", lambda self, *keys: None)
    runs = {}
    for lr in (0.0, 1e-3):
        torch.manual_seed(0)
        model, batch = _method(small_store, name)
        runs[lr] = _train(model, batch, lr, steps=10)
    trained, control = np.mean(runs[1e-3][-3:]), np.mean(runs[0.0][-3:])
    assert trained < control, runs
    if name != "dino":  # DINO's loss first rises with the centre at any lr; see the paired check above
        assert trained < runs[1e-3][0], runs


@pytest.mark.parametrize("name", SINGLE_MODALITY)
def test_shapes_devices_and_frozen_teachers(small_store, name):
    torch.manual_seed(0)
    model, batch = _method(small_store, name)
    loss = model.training_step(batch, 0)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    features = model.encoder(torch.zeros(4, 12, 32, 32))
    assert features.shape == (4, model.num_features)
    assert {p.device for p in model.parameters()} == {torch.device("cpu")}
    assert all(b.device == torch.device("cpu") for b in model.buffers())
    assert all(p.grad is not None for p in model.encoder.parameters() if p.requires_grad and p.grad is not None)
    assert any(p.grad is not None for p in model.encoder.parameters())
    for teacher in ("momentum_encoder", "target_encoder", "teacher_encoder"):
        if hasattr(model, teacher):
            assert all(p.grad is None and not p.requires_grad for p in getattr(model, teacher).parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", SINGLE_MODALITY)
def test_training_step_on_cuda(small_store, name):
    model, batch = _method(small_store, name)
    model = model.cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model.training_step({k: v.cuda() for k, v in batch.items()}, 0)
    assert loss.device.type == "cuda" and torch.isfinite(loss)


def test_moco_queue_is_a_ring_buffer(small_store):
    model, _ = _method(small_store, "moco-v2", method={**SMALL["moco-v2"], "queue_size": 8, "projection_dim": 4})
    model.enqueue(torch.ones(5, 4))
    model.enqueue(2 * torch.ones(5, 4))
    assert model.queue[:2].eq(2).all() and model.queue[2:5].eq(1).all() and model.queue[5:].eq(2).all()
    assert int(model.queue_pointer) == 2


def test_dino_teacher_temperature_warms_up(small_store, monkeypatch):
    section = {**SMALL["dino"], "warmup_teacher_temperature": 0.02, "teacher_temperature": 0.06}
    model, _ = _method(small_store, "dino", method={**section, "warmup_teacher_fraction": 0.5})
    steps = iter((0, 25, 50, 99))
    monkeypatch.setattr(type(model), "total_steps", property(lambda self: 100))
    monkeypatch.setattr(type(model), "global_step", property(lambda self: self._step))
    temps = []
    for step in steps:
        model._step = step
        temps.append(model.teacher_temperature())
    assert temps == pytest.approx([0.02, 0.04, 0.06, 0.06])


def test_multi_crop_views_for_dino(small_store):
    model, batch = _method(small_store, "dino", augment={"local_views": 3, "local_crop_size": 12})
    views = model.views(batch)
    assert [v.shape[-1] for v in views] == [32, 32, 12, 12, 12]


def test_local_views_are_refused_by_methods_that_do_not_use_them(small_store):
    with pytest.raises(ConfigError, match=r"'augment\.local_views': method 'simclr' does not use multi-crop"):
        _method(small_store, "simclr", augment={"local_views": 2})


def test_mae_needs_a_vit(small_store):
    store = SampleStore(small_store)
    cfg = PretrainConfig(data=DataConfig(store=small_store), method={"name": "mae"}, encoder={"name": "resnet18"})
    with pytest.raises(ConfigError, match="MAE needs a ViT encoder"):
        METHODS["mae"](cfg.model_dump(mode="json"), [asdict(store.modalities["s2"])], {"s2": store.stats["s2"]})


def test_method_recipes_fill_only_unset_keys(tmp_path):
    cfg = PretrainConfig(data=DataConfig(store=tmp_path), method={"name": "mae"})
    assert cfg.encoder.name == "vit_tiny_patch16_224" and cfg.encoder.patch_size == 4
    assert cfg.augment.brightness == 0 and cfg.optim.weight_decay == 0.05
    cfg = PretrainConfig(
        data=DataConfig(store=tmp_path), method={"name": "mae"}, encoder={"patch_size": 8}, optim={"lr": 1e-4}
    )
    assert cfg.encoder.patch_size == 8 and cfg.optim.lr == 1e-4 and cfg.optim.weight_decay == 0.05
    assert PretrainConfig(data=DataConfig(store=tmp_path), method={"name": "dino"}).augment.local_views == 4
    assert PretrainConfig(data=DataConfig(store=tmp_path)).augment.local_views == 0


def test_band_count_mismatch_is_a_clear_error(small_store):
    model, batch = _method(small_store)
    with pytest.raises(EncoderError, match="modality 's2' has 4 bands but the encoder was built for 12"):
        model.training_step({"s2": batch["s2"][:, :4]}, 0)


def test_nan_inputs_are_counted_not_propagated(small_store):
    model, batch = _method(small_store)
    batch["s2"][0, 2, :3, :3] = float("nan")
    loss = model.training_step(batch, 0)
    assert torch.isfinite(loss)
    assert model.normalizer.filled["s2"] == 9


@pytest.mark.parametrize(
    "stem, stride, expected", [("imagenet", 32, 1), ("imagenet", 16, 2), ("no-maxpool", 32, 2), ("small", 32, 4)]
)
def test_stems_for_small_patches(stem, stride, expected):
    encoder = build_encoder("resnet18", 12, stem, output_stride=stride).eval()
    feature_map = encoder.model.forward_features(torch.zeros(1, 12, 32, 32))
    assert feature_map.shape[-1] == expected
    assert encoder(torch.zeros(2, 12, 32, 32)).shape == (2, 512)


@pytest.mark.parametrize("patch_size, tokens", [(4, 64), (8, 16), (16, 4)])
def test_vit_patch_sizes(patch_size, tokens):
    encoder = build_encoder("vit_tiny_patch16_224", 12, img_size=32, patch_size=patch_size)
    assert encoder.model.patch_embed.num_patches == tokens
    assert encoder(torch.zeros(2, 12, 32, 32)).shape == (2, 192)


def test_vit_refuses_cnn_options():
    with pytest.raises(EncoderError, match="is a ViT: set patch_size"):
        build_encoder("vit_tiny_patch16_224", 12, output_stride=16, img_size=32)
    with pytest.raises(EncoderError, match="not a multiple of patch_size"):
        build_encoder("vit_tiny_patch16_224", 12, img_size=30, patch_size=4)


def test_unknown_encoder_name():
    with pytest.raises(EncoderError, match="unknown encoder 'resnet181'"):
        build_encoder("resnet181", 12)


def test_health_metrics_on_known_embeddings():
    from eossl.methods.health import alignment, effective_rank, normalized_std, uniformity

    torch.manual_seed(0)
    isotropic = torch.randn(2000, 8)
    assert effective_rank(isotropic) == pytest.approx(8, rel=0.05)
    assert normalized_std(isotropic) == pytest.approx(1, rel=0.05)
    line = torch.randn(500, 1) * torch.tensor([[1.0, 2.0, -1.0, 0.5]])
    assert effective_rank(line) == pytest.approx(1, abs=1e-3)
    point = torch.ones(100, 16)
    assert normalized_std(point) == 0 and effective_rank(point) == pytest.approx(1, abs=1e-3)
    assert alignment(isotropic, isotropic) == pytest.approx(0, abs=1e-9)
    assert alignment(isotropic, -isotropic) == pytest.approx(4)
    assert uniformity(point) == pytest.approx(0, abs=1e-6) and uniformity(isotropic[:200]) < -1


def test_health_measurement_leaves_the_run_untouched(small_store):
    from eossl.methods.health import HealthMonitor

    model, batch = _method(small_store)
    batch["s2"][0, 0, :2, :2] = float("nan")
    model.train()
    metrics = HealthMonitor({}).measure(model, batch)
    assert model.training and model.normalizer.filled["s2"] == 0
    assert {"std", "rank", "alignment", "uniformity"} == set(metrics) and metrics["rank"] > 1


@pytest.mark.parametrize("version, layers", [(1, 2), (2, 3)])
def test_simclr_versions_differ_in_head_depth(small_store, version, layers):
    model, _ = _method(small_store, "simclr", method={**SMALL["simclr"], "version": version})
    assert sum(isinstance(m, torch.nn.Linear) for m in model.projection.modules()) == layers


def test_dino_multi_crop_with_a_vit(small_store):
    model, batch = _method(
        small_store, "dino", encoder={"name": "vit_tiny_patch16_224", "patch_size": 4, "img_size": 32}
    )
    assert [v.shape[-1] for v in model.views(batch)] == [32, 32, 16, 16, 16, 16]
    loss = model.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss) and model.encoder.model.patch_embed.proj.weight.grad is not None
