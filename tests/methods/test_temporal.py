"""Temporal positives: partner scenes from the data module, temporal pairing of the zoo, SeCo."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from eossl.checkpoints import read_checkpoint
from eossl.config import DataConfig, PretrainConfig, load_config
from eossl.data.augment import AugmentConfig, MultiModalAugment, apply_alike
from eossl.data.datamodule import EODataModule, StoreDataset
from eossl.data.modality import SENTINEL2_L2A
from eossl.data.store import SampleStore
from eossl.errors import ConfigError, StoreError
from eossl.methods import METHODS
from eossl.methods.pretrain import load_pretrained_encoder, run_pretrain

from .test_methods import SMALL, _method, _train

QUIET_HEALTH = {"every_n_steps": 1, "knn_every_n_steps": 0, "knn_bank_size": 32, "knn_query_size": 16}
IDENTITY = {"crop_scale": (1.0, 1.0), "flip": False, "rotate90": False, "brightness": 0.0, "band_gain": 0.0,
            "contrast": 0.0, "haze": 0.0, "noise_std": 0.0}  # fmt: skip


def _partners(dataset: StoreDataset, dates: int) -> tuple[np.ndarray, ...]:
    batch = dataset.__getitems__(list(range(len(dataset))))
    return tuple(batch[f"index@{k}" if k else "index"].numpy() for k in range(dates))


# -- data layer ------------------------------------------------------------------------------------


def test_partners_are_other_scenes_of_the_same_place_in_the_split(small_store):
    dm = EODataModule(small_store, ["s2"], batch_size=16, dates=3, seed=5)
    table = dm.store.table
    dataset = dm.dataset("train")
    assert len(dataset) == len(dm.splits["train"])  # every place has 4 seasons: nothing left out
    rows = _partners(dataset, 3)
    location, season = table.location_id.to_numpy(), table.season.to_numpy()
    assert (location[rows[1]] == location[rows[0]]).all() and (location[rows[2]] == location[rows[0]]).all()
    assert np.isin(np.concatenate(rows[1:]), dm.splits["train"]).all()
    for a, b in ((0, 1), (0, 2), (1, 2)):  # without replacement: three different scenes (seasons)
        assert (rows[a] != rows[b]).all() and (season[rows[a]] != season[rows[b]]).all()
    batch = dataset.__getitems__([0, 1])
    assert set(batch) == {"s2", "s2@1", "s2@2", "index", "index@1", "index@2"}
    partner = StoreDataset(dm.store, batch["index@1"].numpy(), ["s2"], []).__getitems__([0, 1])
    torch.testing.assert_close(batch["s2@1"], partner["s2"], rtol=0, atol=0, equal_nan=True)


def test_partner_draws_are_random_per_batch_and_reproducible(small_store):
    def draws(seed: int) -> list[np.ndarray]:
        dataset = EODataModule(small_store, ["s2"], dates=2, seed=seed).dataset("train")
        return [_partners(dataset, 2)[1] for _ in range(2)]

    first, second = draws(0)
    assert not np.array_equal(first, second)  # a fresh draw for every batch
    assert all(np.array_equal(a, b) for a, b in zip(draws(0), [first, second], strict=True))
    assert not np.array_equal(draws(1)[0], first)


def test_partners_with_loader_workers(small_store):
    def epoch() -> list[dict[str, torch.Tensor]]:
        torch.manual_seed(0)  # what seed_everything does: the loader derives the workers' seeds from it
        dm = EODataModule(small_store, ["s2"], batch_size=32, num_workers=2, dates=2, in_memory=True)
        return list(dm.train_dataloader())

    batches = epoch()
    location = SampleStore(small_store).table.location_id.to_numpy()
    for batch in batches:
        assert (location[batch["index@1"]] == location[batch["index"]]).all()
        assert (batch["index@1"] != batch["index"]).all() and batch["s2@1"].shape == batch["s2"].shape
    assert all(torch.equal(a["index@1"], b["index@1"]) for a, b in zip(batches, epoch(), strict=True))


def _store_with_table(path, edit) -> SampleStore:
    store = SampleStore(path)
    store.table = edit(store.table.copy())
    return store


def test_places_with_too_few_scenes_are_left_out_with_a_warning(small_store):
    def split_two_places(table):
        table.loc[[0, 1], "location_id"] = [-1, -2]  # place 0 keeps 2 scenes, -1 and -2 have one each
        return table

    store = _store_with_table(small_store, split_two_places)
    with pytest.warns(UserWarning, match=r"4 of 240 rows of store '.*small' left out, their location_id has fewer"):
        dataset = StoreDataset(store, np.arange(240), ["s2"], [], dates=3)
    assert len(dataset) == 236 and not np.isin([0, 1, 2, 3], dataset.indices).any()
    with pytest.warns(UserWarning, match="2 of 240 rows"):
        assert len(StoreDataset(store, np.arange(240), ["s2"], [], dates=2)) == 238


def test_temporal_pairing_errors_name_the_column_and_the_store(small_store):
    with pytest.raises(StoreError, match=r"store '.*small': no location_id has 5 scenes among the 240 rows"):
        StoreDataset(SampleStore(small_store), np.arange(240), ["s2"], [], dates=5)
    store = _store_with_table(small_store, lambda table: table.drop(columns="location_id"))
    with pytest.raises(StoreError, match=r"store '.*small': temporal pairing \(dates=2\) needs a 'location_id' column"):
        StoreDataset(store, np.arange(240), ["s2"], [], dates=2)


# -- same augmentation -----------------------------------------------------------------------------


def test_apply_alike_draws_identical_parameters_for_each_input():
    augment = MultiModalAugment({"s2": SENTINEL2_L2A}, AugmentConfig(haze=0.0, noise_std=0.0))
    fn = lambda x: augment({"s2": x})["s2"]  # noqa: E731
    x = torch.rand(8, 12, 32, 32)
    torch.manual_seed(0)
    same = apply_alike(fn, x, x)
    assert torch.equal(same[0], same[1])
    # crop, flips, rotation, gains and contrast are linear in x: same parameters give out(2x) = 2 out(x)
    scaled = apply_alike(fn, x, 2 * x)
    torch.testing.assert_close(scaled[1], 2 * scaled[0])
    assert not torch.allclose(scaled[0], same[0])  # a fresh seed for every call
    assert not torch.allclose(fn(x), fn(x))  # and plain calls differ
    torch.manual_seed(0)
    assert torch.equal(apply_alike(fn, x, x)[0], same[0])  # the seed comes from torch's generator


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_apply_alike_on_cuda():
    augment = MultiModalAugment({"s2": SENTINEL2_L2A}, AugmentConfig())
    x = torch.rand(8, 12, 32, 32, device="cuda")
    state = torch.cuda.get_rng_state()
    a, b = apply_alike(lambda v: augment({"s2": v})["s2"], x, x)
    assert torch.equal(a, b) and torch.equal(torch.cuda.get_rng_state(), state)


# -- temporal pairing of the zoo -------------------------------------------------------------------


def test_temporal_views_take_the_second_global_view_from_the_other_date(small_store):
    augment = {**IDENTITY, "local_views": 2, "local_crop_size": 32, "local_crop_scale": (1.0, 1.0)}
    model, batch = _method(small_store, "dino", method={**SMALL["dino"], "pairing": "temporal"}, augment=augment)
    normalize = lambda x: model.normalizer({"s2": x})["s2"]  # noqa: E731
    views = model.views(batch)
    assert len(views) == 4
    torch.testing.assert_close(views[1], normalize(batch["s2@1"]))
    for view in (views[0], *views[2:]):  # the first global view and the local views: the sample's own scene
        torch.testing.assert_close(view, normalize(batch["s2"]))
    model, batch = _method(small_store, "dino", augment=augment)  # pairing by augmentation
    for view in model.views(batch):
        torch.testing.assert_close(view, normalize(batch["s2"]))


def test_temporal_pairing_without_partner_scenes_is_a_clear_error(small_store):
    model, batch = _method(small_store, "moco-v2", method={**SMALL["moco-v2"], "pairing": "temporal"})
    with pytest.raises(ConfigError, match=r"'method.pairing': method 'moco-v2' needs 2 scenes .* no 's2@1'"):
        model.training_step({"s2": batch["s2"]}, 0)


def test_pairing_is_checked_per_method():
    with pytest.raises(ConfigError, match=r"'method\.pairing' of method 'mae': Value error, MAE reconstructs one view"):
        load_config(PretrainConfig, None, ["data.store=x", "method.name=mae", "method.pairing=temporal"])
    with pytest.raises(ConfigError, match=r"'method\.pairing' of method 'seco': Input should be 'temporal'"):
        load_config(PretrainConfig, None, ["data.store=x", "method.name=seco", "method.pairing=augment"])
    dates = {
        ("simclr",): 1,
        ("moco-v2", "method.pairing=temporal"): 2,
        ("seco", "method.heads=1"): 2,
        ("seco",): 3,
    }
    for (name, *extra), expected in dates.items():
        cfg = load_config(PretrainConfig, None, ["data.store=x", f"method.name={name}", *extra])
        assert cfg.method.dates == expected, name


def _pretrain(tmp_path, store, name: str, **method) -> tuple[dict, object]:
    cfg = PretrainConfig(
        out=tmp_path / name,
        data=DataConfig(store=store, batch_size=16),
        method={"name": name, **SMALL[name], **method},
        trainer={"max_steps": 3, "progress_bar": False, "log_every_n_steps": 1},
        health=QUIET_HEALTH,
    )
    checkpoint = run_pretrain(cfg)
    return json.loads((tmp_path / name / "summary.json").read_text()), checkpoint


@pytest.mark.parametrize("name", ["moco-v2", "byol"])
def test_zoo_methods_run_with_temporal_pairing(small_store, tmp_path, name):
    summary, checkpoint = _pretrain(tmp_path, small_store, name, pairing="temporal")
    assert summary["steps"] == 3 and np.isfinite(summary["final_loss"]) and summary["health"]["stopped"] is None
    assert load_pretrained_encoder(checkpoint).method == name


# -- SeCo ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("heads", [3, 1])
def test_seco_pretrains_and_exports_its_query_encoder(small_store, tmp_path, heads):
    summary, checkpoint = _pretrain(tmp_path, small_store, "seco", heads=heads)
    assert summary["method"] == "seco" and summary["steps"] == 3 and np.isfinite(summary["final_loss"])
    state = read_checkpoint(checkpoint)["state_dict"]
    assert state["queue"].shape == (heads, 256, 32) and state["queue_pointer"].tolist() == [3 * 16 % 256] * heads
    pretrained = load_pretrained_encoder(checkpoint)
    for key, value in pretrained.encoder.state_dict().items():
        assert torch.equal(value, state["encoder." + key]), key
    assert pretrained.encoder(torch.zeros(2, 12, 32, 32)).shape == (2, 512)


@pytest.mark.parametrize("heads", [3, 1])
def test_seco_loss_decreases_on_a_toy_batch(small_store, heads, monkeypatch):
    """20 steps lower the loss below the first step's and below a paired run with lr=0 (same views);
    the queues are frozen, as for MoCo v2 in test_methods."""
    monkeypatch.setattr(METHODS["seco"], "enqueue", lambda self, subspace, keys: None)
    runs = {}
    for lr in (0.0, 1e-3):
        torch.manual_seed(0)
        model, batch = _method(small_store, "seco", method={**SMALL["seco"], "heads": heads})
        runs[lr] = _train(model, {k: v[:16] for k, v in batch.items()}, lr, steps=20)
    trained, control = np.mean(runs[1e-3][-3:]), np.mean(runs[0.0][-3:])
    assert trained < control and trained < runs[1e-3][0], runs


def test_seco_keys_share_the_augmentation_they_should(small_store, monkeypatch):
    """k1 = a(x2) has q's augmentation, k2 = b(x0) k0's: with x2 = x0 and x1 = x0, k1 equals q and k2 equals k0."""
    model, batch = _method(small_store, "seco")
    same = {"s2": batch["s2"], "s2@1": batch["s2"], "s2@2": batch["s2"]}
    query, (k0, k1, k2) = model.key_views(same)
    assert torch.equal(query, k1) and torch.equal(k0, k2) and not torch.allclose(query, k0)
