"""Change detection on a store pair: Siamese and early-fusion encoders, label fractions over places,
the change metrics in results, change maps, and checkpoints of single-date encoders adopted for both dates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from eossl.config import ConfigError, EvaluateConfig, validate_config
from eossl.data.modality import Modality
from eossl.data.store import SampleStore, StoreWriter
from eossl.data.targets import Dates, Pair, Target
from eossl.evaluation.runner import run_evaluate
from eossl.evaluation.subsets import place_fraction
from eossl.models.change import SiameseEncoder, widen_first_conv
from eossl.models.encoders import build_encoder
from eossl.models.fusion_modes import FUSION_MODES

PLACES, PATCHES, SIZE = 12, 3, 32
SENSOR = dict(kind="optical", bands=("B2", "B3", "B4", "B8"), dtype="uint16", gsd_m=(10.0,) * 4, scale=10000.0)
TINY = {"min_steps": 3, "max_steps": 3, "batch_size": 8, "validations": 1, "patience": 0, "encoder_lr_factor": 1.0}


@pytest.fixture(scope="module")
def pair_store(tmp_path_factory):
    """12 places x 3 patches seen twice; at half of the places a bright square appears on date 2 (the change)."""
    rng = np.random.default_rng(0)
    n = PLACES * PATCHES
    before = (1500 + rng.integers(0, 400, (n, 4, SIZE, SIZE))).astype(np.uint16)
    after = (before.astype(np.int64) + rng.integers(-100, 100, before.shape)).clip(0).astype(np.uint16)
    change = np.zeros((n, 1, SIZE, SIZE), dtype=np.uint8)
    place = np.repeat(np.arange(PLACES), PATCHES)
    for i in np.flatnonzero(place % 2 == 0):
        y, x = rng.integers(0, SIZE - 12, 2)
        change[i, 0, y : y + 12, x : x + 12] = 1
        after[i, :, y : y + 12, x : x + 12] = 6000
    change[:, :, 0, :4] = 255  # unlabelled pixels
    path = tmp_path_factory.mktemp("pairs") / "store"
    modalities = {"s2": Modality(name="s2", **SENSOR), "s2_after": Modality(name="s2_after", **SENSOR)}
    writer = StoreWriter(path, n, modalities, extra_arrays={"change": ((1, SIZE, SIZE), "uint8")})
    table = pd.DataFrame({"location_id": [f"city{p}" for p in place], "time": "2020", "time_after": "2021"})
    writer.write({"s2": before, "s2_after": after, "change": change}, table)
    target = Target("change", "change", array="change", class_names=("no change", "change"), ignore_index=255)
    return writer.close(targets=[target], dates=Dates("location_id", "time"),
                        pairs=[Pair("s2_change", "s2", "s2_after", "change")])  # fmt: skip


def _config(store, out, **extra) -> EvaluateConfig:
    raw = {"out": str(out), "data": {"store": str(store), "modality": "s2", "val": 0.25, "test": 0.25},
           "inits": ["random"], "tasks": ["change"], "fractions": [0.5, 1.0], "seeds": [0],
           "knn": {"enabled": False}, "linear": {"enabled": False}, "finetune": TINY,
           "encoder": {"name": "resnet18"}, "prediction_maps": 2, **extra}  # fmt: skip
    return validate_config(EvaluateConfig, raw)


def test_siamese_encoder_fuses_both_dates_at_every_level():
    inner = build_encoder("resnet18", 4)
    x = torch.randn(2, 8, SIZE, SIZE)
    diff, conc = SiameseEncoder(inner, "diff").eval(), SiameseEncoder(inner, "concat").eval()
    with torch.no_grad():
        a, b = inner.forward_pyramid(x[:, :4]), inner.forward_pyramid(x[:, 4:])
        for fused, first, second in zip(diff.forward_pyramid(x), a, b, strict=True):
            torch.testing.assert_close(fused, (first - second).abs())
        assert [f.shape[1] for f in conc.forward_pyramid(x)] == [2 * f.shape[1] for f in a]
        assert conc(x).shape == (2, 2 * inner.num_features) and diff(x).shape == (2, inner.num_features)
        same = torch.cat([x[:, :4], x[:, :4]], dim=1)
        assert float(diff(same).abs().max()) == 0.0  # identical dates: no difference anywhere
    with pytest.raises(Exception, match="two dates of 4 bands"):
        diff(torch.randn(1, 6, SIZE, SIZE))


def test_early_fusion_from_a_single_date_encoder_keeps_its_activations_on_identical_dates():
    single = build_encoder("resnet18", 4).eval()
    widened = widen_first_conv(single).eval()
    x = torch.randn(2, 4, SIZE, SIZE)
    assert widened.in_chans == 8 and single.in_chans == 4
    with torch.no_grad():
        torch.testing.assert_close(widened(torch.cat([x, x], dim=1)), single(x), atol=1e-5, rtol=1e-4)


def test_siamese_modes_are_dates_only():
    assert FUSION_MODES["siam-diff"].dates_only and not FUSION_MODES["early"].dates_only
    with pytest.raises(ConfigError, match="dates_modes"):
        validate_config(EvaluateConfig, {"data": {"store": "x"}, "fusion": {"modes": ["siam-diff"]}})


def test_place_fractions_take_whole_places_stratified_by_change():
    places = np.repeat(np.arange(10), 3)
    has_change = (places % 2 == 0).astype(np.uint8)
    train = np.arange(30)
    half = place_fraction(places, has_change, train, 0.4, seed=0)
    chosen = np.unique(places[half])
    assert len(chosen) == 4 and len(half) == 12  # 2 places with change, 2 without, every patch of each
    assert (has_change[half] == 1).sum() == 6
    assert set(half) <= set(place_fraction(places, has_change, train, 0.8, seed=0))  # nested


def test_change_detection_is_evaluated_on_the_pair(pair_store, tmp_path):
    cfg = _config(pair_store, tmp_path / "ev", fusion={"dates_modes": ["early", "siam-diff", "siam-conc"]})
    results = run_evaluate(cfg, log=lambda _: None)
    assert set(results.fusion) == {"early", "siam-diff", "siam-conc"} and set(results.modality) == {"s2+s2_after"}
    assert set(results.kind) == {"change"}
    assert {"f1", "precision", "recall", "iou", "overall_accuracy"} <= set(results.metric)
    assert results.value.between(0, 1).all()
    rows = results[results.metric == "f1"]
    assert set(rows.decoder) == {"unet"} and len(rows) == 3 * 2  # 3 fusion modes x 2 fractions
    # fractions count whole places: half of the 6 training places, with all their patches
    store = SampleStore(pair_store)
    assert set(rows.num_labels) <= {n * PATCHES for n in range(1, PLACES + 1)}
    assert len(store) == PLACES * PATCHES
    assert (tmp_path / "ev" / "prediction_maps_change.png").stat().st_size > 0
    saved = sorted(p.name for p in (tmp_path / "ev" / "predictions").glob("change-*.pt"))
    assert "change-finetune-random-siam-diff.pt" in saved and "change-finetune-random-early.pt" in saved


def test_a_change_task_needs_a_declared_pair(tmp_path):
    n = 8
    writer = StoreWriter(tmp_path / "store", n, {"s2": Modality(name="s2", **SENSOR)},
                         extra_arrays={"change": ((1, SIZE, SIZE), "uint8")})  # fmt: skip
    writer.write({"s2": np.ones((n, 4, SIZE, SIZE), np.uint16), "change": np.zeros((n, 1, SIZE, SIZE), np.uint8)},
                 pd.DataFrame({"location_id": np.arange(n)}))  # fmt: skip
    store = writer.close(targets=[Target("change", "change", array="change")])
    with pytest.raises(ConfigError, match="declares no pair of two dates with that target"):
        run_evaluate(_config(store, tmp_path / "x"), log=lambda _: None)
