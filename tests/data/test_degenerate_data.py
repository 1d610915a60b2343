"""Degenerate data is warned about: constant bands and samples without any valid value when a store is
written (named, and flagged in its statistics), and a band's std floored sanely when normalising."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from eossl.data import normalize
from eossl.data.augment import AugmentConfig, MultiModalAugment
from eossl.data.check import check_store
from eossl.data.modality import DEM, SENTINEL1_GRD, SENTINEL2_L2A
from eossl.data.normalize import BandNormalizer, normalize_input, std_floor
from eossl.data.store import SampleStore, StoreWriter

N, SIZE = 12, 8


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    monkeypatch.setattr(normalize, "_WARNED", set())  # each test sees the normaliser's once-per-band warnings


def _s2(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(100, 5000, (N, SENTINEL2_L2A.num_bands, SIZE, SIZE)).astype(np.uint16)


def _messages(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught]


def test_constant_bands_are_warned_about_and_flagged_in_the_statistics(tmp_path):
    rng = np.random.default_rng(0)
    s2, dem = _s2(rng), rng.normal(300, 50, (N, 1, SIZE, SIZE)).astype(np.float32)
    s2[:, 4] = 1234  # B5 constant
    s2[:, 10] = 77  # B11 constant
    dem[:] = 412.5  # a flat DEM
    writer = StoreWriter(tmp_path / "s", N, {"s2": SENTINEL2_L2A, "dem": DEM})
    writer.write({"s2": s2, "dem": dem}, pd.DataFrame({"location_id": np.arange(N)}))
    with pytest.warns(UserWarning) as caught:
        store = SampleStore(writer.close())
    text = " | ".join(_messages(caught))
    assert (
        "modality 's2' has 2 constant band(s)" in text and "B5 (value 0.1234)" in text and "B11 (value 0.0077)" in text
    )
    assert "modality 'dem' has 1 constant band(s)" in text and "elevation (value 412.5)" in text
    assert "B4" not in text
    flags = store.stats["s2"]["constant"]
    assert [b for b, flag in zip(SENTINEL2_L2A.bands, flags, strict=True) if flag] == ["B5", "B11"]
    assert store.stats["dem"]["constant"] == [True]
    report = check_store(store.path)
    assert report.ok and any("constant band(s) B5, B11" in n for n in report.notes)

    # normalised (after the training augmentations), the constant bands stay bounded and are named once
    with pytest.warns(UserWarning) as caught:
        normalizer = BandNormalizer(store.stats, ["s2"], bands={"s2": SENTINEL2_L2A.bands})
        flat = BandNormalizer(store.stats, ["dem"])
    text = " | ".join(_messages(caught))
    assert "modality 's2', band B5" in text and "modality 's2', band B11" in text and "band B4" not in text
    assert "modality 'dem', band #0" in text  # no band names given: numbered
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        BandNormalizer(store.stats, ["s2"], bands={"s2": SENTINEL2_L2A.bands})
    assert not [m for m in _messages(again) if "degenerate" in m]  # once per process
    torch.manual_seed(0)
    x = torch.from_numpy(SENTINEL2_L2A.to_physical(store.read("s2")))
    augmented = MultiModalAugment({"s2": SENTINEL2_L2A}, AugmentConfig())({"s2": x})["s2"]
    out = normalize_input(normalizer, "s2", augmented)
    assert torch.isfinite(out).all() and out.abs().max() < 1e3  # std 1e-10 gave ~1e8 here
    assert normalize_input(normalizer, "s2", x)[:, [4, 10]].abs().max() < 1e-2  # the data itself: ~0
    dem_out = normalize_input(flat, "dem", torch.from_numpy(DEM.to_physical(store.read("dem"))))
    assert dem_out.abs().max() < 1e-2


def test_samples_without_any_valid_value_are_counted_and_named(tmp_path):
    rng = np.random.default_rng(1)
    s2, s1 = _s2(rng), rng.normal(-12, 3, (N, 2, SIZE, SIZE)).astype(np.float32)
    s2[[3, 7, 8]] = SENTINEL2_L2A.nodata  # three scenes entirely nodata
    s2[5, :, :4] = SENTINEL2_L2A.nodata  # half a scene: not empty
    s1[[2, 9]] = np.nan
    s1[4, 0] = np.inf
    s1[4, 1] = np.nan
    writer = StoreWriter(tmp_path / "s", N, {"s2": SENTINEL2_L2A, "s1": SENTINEL1_GRD})
    writer.write({"s2": s2[:6], "s1": s1[:6]}, pd.DataFrame({"location_id": np.arange(6)}))
    writer.write({"s2": s2[6:], "s1": s1[6:]}, pd.DataFrame({"location_id": np.arange(6, N)}))
    with pytest.warns(UserWarning) as caught:
        writer.close()
    text = " | ".join(_messages(caught))
    assert "3 of 12 samples hold no valid value of modality 's2'" in text and "(nodata 0)" in text
    assert "sample ids 3, 7, 8" in text
    assert "3 of 12 samples hold no valid value of modality 's1'" in text and "sample ids 2, 4, 9" in text
    assert "constant" not in text


def test_many_empty_samples_name_the_first_ids(tmp_path):
    rng = np.random.default_rng(2)
    s2 = _s2(rng)
    s2[1:] = 0
    writer = StoreWriter(tmp_path / "s", N, {"s2": SENTINEL2_L2A})
    writer.write({"s2": s2}, pd.DataFrame({"location_id": np.arange(N)}))
    with pytest.warns(UserWarning, match=r"11 of 12 samples .* sample ids 1, 2, 3, 4, 5, \.\.\."):
        writer.close()


def test_ordinary_data_gives_no_degenerate_warning(tmp_path):
    rng = np.random.default_rng(3)
    writer = StoreWriter(tmp_path / "s", N, {"s2": SENTINEL2_L2A})
    writer.write({"s2": _s2(rng)}, pd.DataFrame({"location_id": np.arange(N)}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = SampleStore(writer.close())
        BandNormalizer(store.stats, ["s2"])
    assert not [m for m in _messages(caught) if "constant" in m or "valid value" in m or "degenerate" in m]
    assert not any(store.stats["s2"]["constant"])


def test_the_std_floor_is_relative_to_the_band_scale():
    assert std_floor(0.12) == pytest.approx(1e-3)  # reflectance: at least 0.001
    assert std_floor(1500.0) == pytest.approx(1.5)  # a DEM: a thousandth of its mean
    assert std_floor(0.1, p2=-20.0, p98=30.0) == pytest.approx(0.05)  # the percentile span, where known
    assert std_floor(float("nan")) == pytest.approx(1e-3)
    stats = {"s2": {"mean": [0.1, 0.1, 0.0], "std": [0.05, 1e-10, 0.0]}}
    with pytest.warns(UserWarning) as caught:
        normalizer = BandNormalizer(stats, ["s2"])
    text = " | ".join(_messages(caught))
    assert "modality 's2', band #1: std 1e-10 (mean 0.1)" in text and "normalised with std 0.001" in text
    assert "band #2: std 0 (mean 0)" in text and "band #0" not in text
    assert normalizer.s2_std.flatten().tolist() == pytest.approx([0.05, 1e-3, 1e-3])
    x = torch.full((1, 3, 2, 2), 0.1)
    assert torch.allclose(normalizer({"s2": x})["s2"][0, :, 0, 0], torch.tensor([0.0, 0.0, 100.0]))


def test_bands_without_any_valid_value_keep_their_placeholders_without_warning(tmp_path):
    rng = np.random.default_rng(4)
    s1 = rng.normal(-12, 3, (N, 2, SIZE, SIZE)).astype(np.float32)
    s1[:, 1] = np.nan  # VH missing everywhere: placeholders mean 0, std 1
    modality = replace(SENTINEL1_GRD, nodata=float("nan"))
    writer = StoreWriter(tmp_path / "s", N, {"s1": modality})
    writer.write({"s1": s1}, pd.DataFrame({"location_id": np.arange(N)}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = SampleStore(writer.close())
        BandNormalizer(store.stats, ["s1"])
    assert not [m for m in _messages(caught) if "constant" in m or "degenerate" in m or "valid value" in m]
    assert store.stats["s1"]["std"][1] == 1.0 and store.stats["s1"]["constant"] == [False, False]
