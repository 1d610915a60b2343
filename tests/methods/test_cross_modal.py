"""Cross-modal pretraining (Dual-SimCLR, MMA): pairings, encoder layouts, objectives, the MMA loss, sensor
dropout, health monitoring, `eossl pretrain` end to end and the encoders rebuilt from its checkpoint."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from itertools import combinations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from lightly.loss import BarlowTwinsLoss, NTXentLoss, VICRegLoss
from typer.testing import CliRunner

from eossl.checkpoints import read_checkpoint
from eossl.cli.main import app
from eossl.config import DataConfig, PretrainConfig
from eossl.data.datamodule import StoreDataset
from eossl.data.normalize import normalize_input
from eossl.data.store import SampleStore
from eossl.errors import CheckpointError, ConfigError, EncoderError
from eossl.methods import METHODS
from eossl.methods.health import HealthMonitor
from eossl.methods.pretrain import load_pretrained_encoder, load_pretrained_encoders, run_pretrain
from eossl.methods.zoo.cross_modal import CrossModalMethod, cell_info_nce, cells
from eossl.models.features import encode
from eossl.models.fusion import presence, split_modalities

runner = CliRunner()
TINY = {"name": "test_resnet"}  # timm's 0.4M-parameter ResNet: the same code paths as resnet18, 7x faster
SIZED = {**TINY, "img_size": 32}  # what eossl pretrain sets from the store (MMA sizes its heads from it)
HEADS = {"hidden_dim": 32, "projection_dim": 16}
PAIRINGS = [("s2", "s1"), ("s2", "dem"), ("s2", "s1", "dem")]
NO_RADIOMETRY = {k: 0.0 for k in ("brightness", "band_gain", "contrast", "haze", "noise_std")} | {
    "sar_offset_db": 0.0,
    "sar_noise_db": 0.0,
}


def _model(store_path, name="dual-simclr", modalities=("s2", "s1"), augment_section=None, **method):
    store = SampleStore(store_path)
    cfg = PretrainConfig(
        data=DataConfig(store=store_path, modalities=list(modalities)),
        method={"name": name, **HEADS, **method},
        encoder=SIZED,
        augment=augment_section or {},
    )
    specs = [asdict(store.modalities[m]) for m in modalities]
    model = METHODS[name](cfg.model_dump(mode="json"), specs, {m: store.stats[m] for m in modalities})
    logged = {}
    model.log = lambda key, value, **kwargs: logged.__setitem__(key, value)
    batch = StoreDataset(store, np.arange(32), list(modalities), []).__getitems__(list(range(32)))
    return model, batch, logged


def _train(model, batch, lr, steps):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        loss = model.training_step(batch, step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def test_registered_as_the_cross_modal_family():
    for name in ("dual-simclr", "mma"):
        config = METHODS[name].config
        assert issubclass(METHODS[name], CrossModalMethod)
        assert config.family == "cross-modal" and config.cross_modal
        defaults = config().model_dump()
        assert defaults["temperature"] == 0.2 and defaults["hidden_dim"] == 512 and defaults["projection_dim"] == 128
        assert defaults["objective"] == "nt-xent" and defaults["encoders"] == "separate"
        assert defaults["augment"] is False and defaults["sensor_dropout"] == 0 and config().dates == 1


@pytest.mark.parametrize("encoders", ["separate", "shared"])
@pytest.mark.parametrize("modalities", PAIRINGS, ids="+".join)
@pytest.mark.parametrize("name", ["dual-simclr", "mma"])
def test_every_pairing_trains_every_modality(small_store, name, modalities, encoders):
    torch.manual_seed(0)
    model, batch, logged = _model(small_store, name, modalities, encoders=encoders)
    loss = model.training_step(batch, 0)
    loss.backward()
    pairs = [f"train/loss_{a}_{b}" for a, b in combinations(modalities, 2)]  # N = 3: three pairs
    assert sorted(k for k in logged if k.startswith("train/loss_")) == sorted(pairs)
    assert torch.isfinite(loss) and float(loss.detach()) == pytest.approx(np.mean([float(logged[k]) for k in pairs]))
    for m in modalities:  # every modality's encoder (shared: its stem) and head learn
        if encoders == "separate":
            first = next(model.encoders[m].parameters())
        else:
            first = model.fused_encoder.stems.convs[m].weight
        assert first.grad is not None and first.grad.abs().sum() > 0, m
        assert all(p.grad is not None for p in model.projections[m].parameters()), m
    if encoders == "shared":
        assert not hasattr(model, "encoders") and sum(1 for _ in model.fused_encoder.parameters()) > 0
    # the anchor's encoder, as the health monitor and the online kNN use it, takes the anchor alone
    assert model.modality_name == "s2"
    assert model.encoder(torch.zeros(2, 12, 32, 32)).shape == (2, model.num_features)


@pytest.mark.parametrize("objective", ["nt-xent", "vicreg", "barlow-twins"])
@pytest.mark.parametrize("name", ["dual-simclr", "mma"])
def test_each_objective_between_the_two_modalities(small_store, name, objective):
    model, batch, _ = _model(small_store, name, objective=objective)
    loss = model.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    criterion = {"nt-xent": NTXentLoss, "vicreg": VICRegLoss, "barlow-twins": BarlowTwinsLoss}[objective]
    assert isinstance(model.criterion, criterion)
    with torch.no_grad():  # no augmentation and BatchNorm on batch statistics: the same projections again
        z = model.embed(model.inputs(batch))
        if name == "dual-simclr":
            assert z["s2"].shape == (32, HEADS["projection_dim"])
            expected = model.criterion(z["s2"], z["s1"])
        elif objective == "nt-xent":
            assert z["s2"].shape == (32, HEADS["projection_dim"], 2, 2)  # test_resnet at output stride 16
            expected = cell_info_nce(z["s2"], z["s1"], 0.2)
        else:  # every cell is a sample
            expected = model.criterion(cells(z["s2"]), cells(z["s1"]))
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-4)


def test_cell_info_nce_by_hand():
    # one sample, two cells of D=2: cell (0, 0) = (1, 0) and cell (0, 1) = (0, 1)
    a = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])
    t = 0.5  # cosine 1 -> logit 2, cosine 0 -> logit 0
    assert float(cell_info_nce(a, a, t)) == pytest.approx(math.log(1 + math.exp(-2)))
    assert float(cell_info_nce(a, a.flip(-1), t)) == pytest.approx(math.log(1 + math.exp(2)))  # cells swapped


def test_cell_info_nce_positive_is_the_same_cell_of_the_same_sample():
    torch.manual_seed(0)
    a, b, t = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2), 0.2
    keys = [(i, y, x) for i in range(3) for y in range(2) for x in range(2)]

    def one_way(q, k):  # every cell of q against every cell of every sample of k; positive: the same (i, y, x)
        total = 0.0
        for i, y, x in keys:
            sims = torch.stack([F.cosine_similarity(q[i, :, y, x], k[j, :, v, u], dim=0) for j, v, u in keys]) / t
            total += float(sims.logsumexp(0) - sims[keys.index((i, y, x))])
        return total / len(keys)

    assert float(cell_info_nce(a, b, t)) == pytest.approx((one_way(a, b) + one_way(b, a)) / 2, rel=1e-5)
    shuffled = cells(a)[torch.randperm(12)].reshape(3, 2, 2, 4).permute(0, 3, 1, 2)
    assert cell_info_nce(a, a, t) < cell_info_nce(a, shuffled, t)  # aligned maps beat displaced cells
    with pytest.raises(ValueError, match="cannot be aligned cell by cell"):
        cell_info_nce(a, a[:, :, :1], t)


@pytest.mark.parametrize("encoders", ["separate", "shared"])
def test_sensor_dropout_adds_a_logged_fused_term(small_store, encoders):
    torch.manual_seed(0)
    model, batch, logged = _model(
        small_store, "dual-simclr", ("s2", "s1", "dem"), encoders=encoders, sensor_dropout=0.5
    )
    loss = model.training_step(batch, 0)
    loss.backward()
    pairs = np.mean([float(logged[f"train/loss_{a}_{b}"]) for a, b in combinations(("s2", "s1", "dem"), 2)])
    assert float(loss.detach()) == pytest.approx(pairs + float(logged["train/loss_fused"]), rel=1e-5)
    if encoders == "shared":
        assert all(p.grad is not None for p in model.fused_projection.parameters())
    model, batch, logged = _model(small_store, "dual-simclr", encoders=encoders)
    model.training_step(batch, 0)
    assert "train/loss_fused" not in logged and not hasattr(model, "fused_projection")


def test_fused_views_never_lose_every_modality(small_store):
    model, _, _ = _model(small_store, "dual-simclr", ("s2", "s1", "dem"), sensor_dropout=0.9)
    keep = torch.cat([model.draw_keep(64) for _ in range(20)])
    assert keep.any(dim=1).all()  # never empty
    assert (keep.sum(dim=1) == 1).float().mean() > 0.5 and keep.float().mean() < 0.5  # and p = 0.9 drops a lot


def test_fused_view_of_separate_encoders_is_the_mean_of_the_kept_projections(small_store, monkeypatch):
    model, batch, _ = _model(small_store, "mma", ("s2", "s1", "dem"), sensor_dropout=0.5)
    masks = iter([torch.tensor([[True, False, True]] * 32), torch.tensor([[False, True, False]] * 32)])
    monkeypatch.setattr(model, "draw_keep", lambda n: next(masks))
    z = {m: torch.randn(32, 4, 2, 2) for m in ("s2", "s1", "dem")}
    first, second = model.fused_views(model.inputs(batch), z)
    assert torch.allclose(first, (z["s2"] + z["dem"]) / 2) and torch.equal(second, z["s1"])


def test_fused_views_of_a_shared_encoder_blank_the_dropped_modalities(small_store, monkeypatch):
    torch.manual_seed(0)
    model, batch, _ = _model(small_store, "dual-simclr", ("s2", "s1", "dem"), encoders="shared", sensor_dropout=0.7)
    seen = []
    features = model.features
    monkeypatch.setattr(model, "features", lambda encoder, x: seen.append(x) or features(encoder, x))
    model.training_step(batch, 0)
    alone, fused = seen  # one pass with each modality alone, then the two fused views
    present = presence(split_modalities(fused, [12, 2, 1]))
    assert fused.shape[0] == 64 and present.any(dim=1).all() and not present.all()
    assert presence(split_modalities(alone, [12, 2, 1])).sum(dim=1).eq(1).all()


def test_no_augmentation_by_default_and_augment_moves_modalities_alike(small_store):
    model, batch, _ = _model(small_store)
    x = model.inputs(batch)
    for m in ("s2", "s1"):
        normalizer = model.normalizers[m]
        assert torch.equal(x[m], normalizer(normalizer.fill_invalid({m: batch[m]}))[m])
    # a ramp in every band of both modalities; crops, flips and rotations only
    model, _, _ = _model(small_store, augment_section=NO_RADIOMETRY, augment=True)
    ramp = torch.arange(32 * 32, dtype=torch.float32).view(1, 1, 32, 32) / 1024 + torch.arange(8.0).view(8, 1, 1, 1)
    x = model.inputs({"s2": ramp.expand(8, 12, 32, 32), "s1": ramp.expand(8, 2, 32, 32)})
    physical = {m: x[m] * getattr(model.normalizers[m], f"{m}_std") + getattr(model.normalizers[m], f"{m}_mean")
                for m in ("s2", "s1")}  # fmt: skip
    assert torch.allclose(physical["s2"][:, :2], physical["s1"], atol=1e-4)
    assert not torch.allclose(physical["s1"], ramp.expand(8, 2, 32, 32), atol=1e-3)  # it did move them


@pytest.mark.parametrize("encoders", ["separate", "shared"])
def test_health_monitor_watches_the_anchor(small_store, encoders):
    model, batch, _ = _model(small_store, encoders=encoders)
    batch["s2"][0, 0, :2, :2] = float("nan")
    model.train()
    metrics = HealthMonitor({}).measure(model, batch)
    assert model.training and model.normalizer.filled["s2"] == 0
    assert {"std", "rank", "alignment", "uniformity"} == set(metrics) and metrics["rank"] > 1
    features = encode(model.encoder, model.normalizer, model.modality_name, batch["s2"], torch.device("cpu"))
    assert features.shape == (32, model.num_features) and torch.isfinite(features).all()


def test_dual_simclr_loss_decreases_on_a_toy_batch(small_store):
    runs = {}
    for lr in (0.0, 1e-3):
        torch.manual_seed(0)
        model, batch, _ = _model(small_store)
        runs[lr] = _train(model, batch, lr, steps=20)
    trained, control = np.mean(runs[1e-3][-3:]), np.mean(runs[0.0][-3:])
    assert trained < control and trained < runs[1e-3][0], runs


def test_band_counts_and_multi_crop_are_checked(small_store):
    model, batch, _ = _model(small_store)
    with pytest.raises(EncoderError, match="modality 's1' has 1 bands but the encoder was built for 2"):
        model.training_step({**batch, "s1": batch["s1"][:, :1]}, 0)
    with pytest.raises(ConfigError, match=r"'augment\.local_views': method 'mma' does not use multi-crop"):
        _model(small_store, "mma", augment_section={"local_views": 2})


def _pretrain_config(tmp_path, store, name, encoders, modalities, **extra):
    cfg = {
        "out": str(tmp_path / name),
        "data": {"store": str(store), "batch_size": 16, "modalities": list(modalities)},
        "encoder": TINY,
        "method": {"name": name, "encoders": encoders, **HEADS},
        "trainer": {"max_steps": 2, "progress_bar": False, "log_every_n_steps": 1},
        "health": {"every_n_steps": 1, "knn_every_n_steps": 2, "knn_bank_size": 64, "knn_query_size": 32},
        **extra,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(
    "name, encoders, modalities",
    [("dual-simclr", "separate", ("s2", "s1")), ("mma", "shared", ("s2", "s1", "dem"))],
)
def test_pretrain_end_to_end_and_encoders_from_the_checkpoint(small_store, tmp_path, name, encoders, modalities):
    config = _pretrain_config(tmp_path, small_store, name, encoders, modalities)
    result = runner.invoke(app, ["pretrain", str(config)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / name / "summary.json").read_text())
    assert summary["method"] == name and summary["steps"] == 2 and summary["samples_per_second"] > 0
    assert summary["modality"] == "s2" and summary["modalities"] == list(modalities)
    assert set(summary["filled_nonfinite_values"]) == set(modalities)
    assert summary["health"]["stopped"] is None and [k["step"] for k in summary["health"]["knn_accuracy"]] == [2]

    ckpt = tmp_path / name / "checkpoints" / "last.ckpt"
    state = read_checkpoint(ckpt)["state_dict"]
    encoders_ = load_pretrained_encoders(ckpt)
    fused_name = "+".join(modalities)
    assert list(encoders_) == list(modalities) + ([fused_name] if encoders == "shared" else [])
    store = SampleStore(small_store)
    images = StoreDataset(store, np.arange(8), list(modalities), []).__getitems__(list(range(8)))
    for m in modalities:
        pretrained = encoders_[m]
        assert pretrained.modality == m and pretrained.modalities == [m] and pretrained.method == name
        assert getattr(pretrained.normalizer, f"{m}_mean").flatten().tolist() == pytest.approx(store.stats[m]["mean"])
        assert not pretrained.encoder.training
        if encoders == "separate":
            for key, value in pretrained.encoder.state_dict().items():
                assert torch.equal(value, state[f"encoders.{m}.{key}"]), key
    if encoders == "shared":
        fused = encoders_[fused_name]
        assert fused.modalities == list(modalities) and fused.encoder.handles_missing
        for key, value in fused.encoder.state_dict().items():
            assert torch.equal(value, state[f"fused_encoder.{key}"]), key
        stacked_mean = [v for m in modalities for v in store.stats[m]["mean"]]
        assert getattr(fused.normalizer, f"{fused_name}_mean").flatten().tolist() == pytest.approx(stacked_mean)
        with torch.no_grad():
            for m in modalities:  # a single-modality encoder = the fused encoder with the others blanked
                single = encoders_[m]
                alone = single.encoder(normalize_input(single.normalizer, m, images[m]))
                blanked = torch.cat(
                    [images[n] if n == m else torch.full_like(images[n], float("nan")) for n in modalities], dim=1
                )
                x = normalize_input(fused.normalizer, fused_name, blanked, not fused.encoder.handles_missing)
                assert torch.allclose(alone, fused.encoder(x), atol=1e-5), m

    assert load_pretrained_encoder(ckpt).modality == "s2"
    assert load_pretrained_encoder(ckpt, "s1").modality == "s1"
    with pytest.raises(CheckpointError, match="has no encoder for 'lulc'"):
        load_pretrained_encoder(ckpt, "lulc")

    if encoders == "separate":  # resume: two more steps from the saved step, optimizer and schedule
        resumed = _pretrain_config(tmp_path, small_store, name, encoders, modalities, resume=str(ckpt))
        args = ["pretrain", str(resumed), "trainer.max_steps=4", f"out={tmp_path / 'resumed'}"]
        assert runner.invoke(app, args, catch_exceptions=False).exit_code == 0
        assert json.loads((tmp_path / "resumed" / "summary.json").read_text())["steps"] == 4


def test_single_modality_checkpoints_load_as_before(small_store, tmp_path):
    cfg = PretrainConfig(
        out=tmp_path / "simclr",
        data=DataConfig(store=small_store, batch_size=16),
        encoder=TINY,
        method={"name": "simclr", **HEADS},
        trainer={"max_steps": 1, "progress_bar": False},
        health={"knn_every_n_steps": 0},
    )
    ckpt = run_pretrain(cfg)
    assert json.loads((tmp_path / "simclr" / "summary.json").read_text())["modalities"] == ["s2"]
    encoders = load_pretrained_encoders(ckpt)
    assert list(encoders) == ["s2"] and encoders["s2"].modalities == ["s2"]
    assert load_pretrained_encoder(ckpt, "s2").modality == load_pretrained_encoder(ckpt).modality == "s2"


@pytest.mark.parametrize(
    "modalities, message",
    [
        (None, "needs at least 2 distinct"),
        (["s2"], "needs at least 2 distinct"),
        (["s2", "s2"], "needs at least 2 distinct"),
        (["s2", "s3"], "has no modality 's3'"),
        (["s2", "lulc"], "'lulc' is categorical; pretraining needs image bands"),
    ],
)
def test_modality_errors_name_data_modalities(small_store, tmp_path, modalities, message):
    data = DataConfig(store=small_store, modalities=modalities)
    cfg = PretrainConfig(out=tmp_path / "run", data=data, method={"name": "dual-simclr"})
    with pytest.raises(ConfigError, match=rf"^'data\.modalities': .*{message}"):
        run_pretrain(cfg)
    assert not (tmp_path / "run").exists()


def test_modality_keys_belong_to_their_methods(small_store, tmp_path):
    data = DataConfig(store=small_store, modalities=["s2", "s1"])
    with pytest.raises(ConfigError, match=r"'data\.modalities': method 'simclr' trains on one modality"):
        run_pretrain(PretrainConfig(out=tmp_path / "run", data=data))
    store = SampleStore(small_store)
    cfg = PretrainConfig(data=data, method={"name": "mma"}, encoder=SIZED).model_dump(mode="json")
    for names in (["s2", "lulc"], ["s1"]):
        specs = [asdict(store.modalities[n]) for n in names]
        with pytest.raises(ConfigError, match=r"^'data\.modalities': "):
            METHODS["mma"](cfg, specs, {n: store.stats.get(n, {}) for n in names})
