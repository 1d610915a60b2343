"""Multi-sensor pretraining of one wavelength-conditioned ViT (sensors in turn, by step) and evaluation of a
wavelength checkpoint on a sensor it was not pretrained on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from eossl.checkpoints import load_pretrained_encoders
from eossl.config import ConfigError, EvaluateConfig, PretrainConfig, validate_config
from eossl.data.modality import S2_BANDS, S2_WAVELENGTHS, Modality
from eossl.data.store import StoreWriter
from eossl.data.targets import Target
from eossl.evaluation.runner import run_evaluate
from eossl.methods.base import check_multi_sensor
from eossl.methods.pretrain import run_pretrain
from eossl.models.encoder_zoo.wavelength_vit import WavelengthViT

from .test_methods import SMALL

N, SIZE, HSI_BANDS = 32, 16, 30
S2 = Modality(name="s2", kind="optical", bands=S2_BANDS, dtype="uint16", gsd_m=(10.0,) * 12, scale=10000.0,
              nodata=0, wavelengths_nm=S2_WAVELENGTHS)  # fmt: skip
HSI = Modality(name="hsi", kind="optical", bands=tuple(f"b{i}" for i in range(HSI_BANDS)), dtype="uint16",
               gsd_m=(30.0,) * HSI_BANDS, scale=10000.0, nodata=0,
               wavelengths_nm=tuple(float(w) for w in np.linspace(420, 2400, HSI_BANDS)))  # fmt: skip
ENCODER = {"name": "wavelength-vit-s", "patch_size": 8, "img_size": SIZE}
HEALTH = {"every_n_steps": 2, "knn_every_n_steps": 0}


@pytest.fixture(scope="module")
def two_sensor_store(tmp_path_factory):
    """32 co-registered places seen by an S2-like (12 bands) and a hyperspectral-like sensor (30 bands)."""
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, N)
    base = (1000 + 2000 * label)[:, None, None, None]
    images = {
        name: (base + rng.integers(0, 500, (N, bands, SIZE, SIZE))).astype(np.uint16)
        for name, bands in (("s2", 12), ("hsi", HSI_BANDS))
    }
    path = tmp_path_factory.mktemp("sensors") / "store"
    writer = StoreWriter(path, N, {"s2": S2, "hsi": HSI})
    writer.write(images, pd.DataFrame({"place": np.arange(N), "cover": label}))
    return writer.close(targets=[Target("cover", "single-label", column="cover", class_names=("dark", "bright"))])


def _pretrain(store, out, method, **data):
    cfg = PretrainConfig(
        out=out, data={"store": store, "batch_size": 8, **data}, method={"name": method, **SMALL[method]},
        encoder=ENCODER, trainer={"max_steps": 4, "progress_bar": False, "log_every_n_steps": 1}, health=HEALTH,
    )  # fmt: skip
    return run_pretrain(cfg)


@pytest.fixture
def wavelength_calls(monkeypatch):
    """(module, band count) of every switch of a wavelength encoder's sensor."""
    calls = []
    original = WavelengthViT.set_wavelengths

    def spy(self, wavelengths, bandwidths=None):
        calls.append((id(self), len(wavelengths)))
        original(self, wavelengths, bandwidths)

    monkeypatch.setattr(WavelengthViT, "set_wavelengths", spy)
    return calls


def test_one_vit_pretrains_on_two_sensors_in_turn(two_sensor_store, tmp_path, wavelength_calls):
    ckpt = _pretrain(two_sensor_store, tmp_path / "run", "simclr", modalities=["s2", "hsi"])
    # steps 1 and 3 train on hsi; the anchor (s2) is restored after each of them
    assert [bands for _, bands in wavelength_calls] == [HSI_BANDS, 12, HSI_BANDS, 12]
    metrics = pd.read_csv(tmp_path / "run" / "logs" / "metrics.csv")
    assert metrics["train/sensor"].dropna().tolist() == [0.0, 1.0, 0.0, 1.0]

    encoders = load_pretrained_encoders(ckpt)
    assert list(encoders) == ["s2", "hsi"]
    assert encoders["hsi"].stats["mean"] and len(encoders["hsi"].stats["mean"]) == HSI_BANDS
    for name, bands in (("s2", 12), ("hsi", HSI_BANDS)):
        pretrained = encoders[name]
        x = pretrained.normalizer({name: torch.rand(2, bands, SIZE, SIZE) * 3000})[name]
        features = pretrained.encoder(x)
        assert features.shape == (2, pretrained.encoder.num_features) and torch.isfinite(features).all()
    # one set of weights for both sensors
    s2_state, hsi_state = (encoders[n].encoder.state_dict() for n in ("s2", "hsi"))
    assert all(torch.equal(s2_state[k], hsi_state[k]) for k in s2_state)


def test_the_momentum_encoder_switches_sensor_too(two_sensor_store, tmp_path, wavelength_calls):
    _pretrain(two_sensor_store, tmp_path / "run", "moco-v2", modalities=["s2", "hsi"])
    switched = {module for module, bands in wavelength_calls if bands == HSI_BANDS}
    assert len(switched) == 2  # the query encoder and its momentum copy


def test_several_modalities_need_a_wavelength_encoder(two_sensor_store, tmp_path):
    cfg = PretrainConfig(
        out=tmp_path / "run", data={"store": two_sensor_store, "modalities": ["s2", "hsi"]},
        method={"name": "simclr", **SMALL["simclr"]}, encoder={"name": "resnet18"},
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"'data.modalities': .*wavelength-vit-s.*not 'resnet18'"):
        run_pretrain(cfg)
    sar = Modality(name="s1", kind="sar", bands=("vv", "vh"), dtype="float32", gsd_m=(10.0, 10.0))
    with pytest.raises(ConfigError, match=r"'data.modalities': .*'s1' declares no wavelengths_nm"):
        check_multi_sensor("simclr", "wavelength-vit-s", [S2, sar])
    with pytest.raises(ConfigError, match=r"'data.modalities': method 'mae' cannot pretrain on several sensors"):
        check_multi_sensor("mae", "wavelength-vit-s", [S2, HSI])


def test_a_wavelength_checkpoint_is_evaluated_on_a_sensor_it_never_saw(two_sensor_store, tmp_path):
    ckpt = _pretrain(two_sensor_store, tmp_path / "s2", "simclr", modality="s2")
    assert list(load_pretrained_encoders(ckpt)) == ["s2"]
    raw = {"out": str(tmp_path / "ev"), "data": {"store": str(two_sensor_store), "modality": "hsi"},
           "checkpoint": str(ckpt), "inits": ["checkpoint"], "tasks": ["cover"], "fractions": [1.0], "seeds": [0],
           "knn": {"ks": [3]}, "linear": {"enabled": False}, "finetune": {"enabled": False},
           "prediction_maps": 0}  # fmt: skip
    lines = []
    results = run_evaluate(validate_config(EvaluateConfig, raw), log=lines.append)
    assert len(results) and set(results.init) == {"simclr"} and set(results.protocol) == {"knn"}
    assert results["value"].notna().all() and set(results.task) == {"cover"}
    assert sum("not pretrained on" in line and "30 wavelengths" in line for line in lines) == 1
    assert not any("skipped" in line for line in lines)
    assert len(pd.read_csv(tmp_path / "ev" / "results.csv")) == len(results)
