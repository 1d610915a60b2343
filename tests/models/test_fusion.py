"""Fusion modules: every mode, missing-modality inference and sensor dropout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from eossl.data.metadata import MetadataError, constant_planes, metadata_encoding, stacked_modality
from eossl.data.modality import DEM, SENTINEL1_GRD, SENTINEL2_L2A, Modality
from eossl.errors import EncoderError
from eossl.models.encoders import build_encoder
from eossl.models.fusion import (
    EarlyFusionEncoder,
    FeatureFusion,
    LateFusionEncoder,
    drop_modalities,
    drop_presence,
    presence,
    set_sensor_dropout,
    single_modality_encoder,
    split_modalities,
    with_modality_stems,
)

CHANNELS = {"s2": 12, "s1": 2}


def _batch(n: int = 4, size: int = 32) -> torch.Tensor:
    return torch.randn(n, sum(CHANNELS.values()), size, size, generator=torch.Generator().manual_seed(0))


def _without(x: torch.Tensor, modality: str) -> torch.Tensor:
    x = x.clone()
    start = 0 if modality == "s2" else CHANNELS["s2"]
    x[:, start : start + CHANNELS[modality]] = float("nan")
    return x


def _late(mode: str) -> LateFusionEncoder:
    torch.manual_seed(0)
    encoders = {m: build_encoder("resnet18", c) for m, c in CHANNELS.items()}
    return LateFusionEncoder(encoders, CHANNELS, mode, image_size=32).eval()


def test_presence_and_split():
    x = _without(_batch(), "s1")
    x[0, CHANNELS["s2"]] = 1.0  # one finite SAR value: that sample has s1
    parts = split_modalities(x, list(CHANNELS.values()))
    assert [p.shape[1] for p in parts] == [12, 2]
    assert presence(parts).tolist() == [[True, True]] + [[True, False]] * 3
    with pytest.raises(ValueError, match="15 channels"):
        split_modalities(torch.zeros(1, 15, 4, 4), [12, 2])


@pytest.mark.parametrize("mode", ["concat", "sum", "attention"])
def test_late_fusion_modes_and_missing_modality(mode):
    model, x = _late(mode), _batch()
    with torch.no_grad():
        full, missing = model(x), model(_without(x, "s1"))
        s2_only = model.encoders["s2"](x[:, :12])
    assert full.shape == (4, model.num_features) and torch.isfinite(missing).all()
    assert not torch.allclose(full, missing)
    if mode == "concat":  # the missing modality contributes zeros, the present one its features
        assert torch.equal(missing[:, 512:], torch.zeros(4, 512)) and torch.allclose(missing[:, :512], s2_only)
    else:  # averaged/attended over present modalities only: s2's projected features alone
        expected = model.fuse.project[0](s2_only[:, :, None, None])[:, :, 0, 0]
        assert torch.allclose(missing, expected, atol=1e-5)
    levels = model.forward_pyramid(_without(x, "s1"))
    assert all(torch.isfinite(level).all() for level in levels) and len(levels) == 5


def test_attention_weights_sum_to_one_over_present_modalities():
    fusion = FeatureFusion([8, 8], "attention")
    a, b = torch.randn(3, 8), torch.randn(3, 8)
    present = torch.tensor([[True, True], [True, False], [False, True]])
    out = fusion([a, b], present)
    pa, pb = (proj(v[:, :, None, None])[:, :, 0, 0] for proj, v in zip(fusion.project, (a, b), strict=True))
    assert torch.allclose(out[1], pa[1], atol=1e-6) and torch.allclose(out[2], pb[2], atol=1e-6)
    lo, hi = torch.minimum(pa[0], pb[0]), torch.maximum(pa[0], pb[0])
    assert ((out[0] >= lo - 1e-6) & (out[0] <= hi + 1e-6)).all()  # a convex combination


def test_modality_stems_equal_the_single_modality_encoder_when_one_is_present():
    torch.manual_seed(0)
    fused = with_modality_stems(build_encoder("resnet18", 12), CHANNELS).eval()
    x = _batch()
    single = single_modality_encoder(fused, "s1").eval()
    with torch.no_grad():
        assert torch.allclose(fused(_without(x, "s2")), single(x[:, 12:]), atol=1e-5)
        assert fused(x).shape == (4, 512)
    assert single.in_chans == 2 and not single.handles_missing and fused.handles_missing
    with pytest.raises(EncoderError, match="dem"):
        single_modality_encoder(fused, "dem")


def test_stems_on_a_vit():
    vit = build_encoder("vit_tiny_patch16_224", 12, img_size=32, patch_size=8)
    fused = with_modality_stems(vit, CHANNELS).eval()
    with torch.no_grad():
        assert torch.isfinite(fused(_without(_batch(), "s1"))).all()


def test_early_fusion_fills_a_missing_modality_with_band_means():
    torch.manual_seed(0)
    plain = build_encoder("resnet18", 14).eval()
    early = EarlyFusionEncoder(plain, CHANNELS).eval()
    x = _without(_batch(), "s1")
    filled = torch.nan_to_num(x, nan=0.0)
    with torch.no_grad():
        assert torch.allclose(early(x), plain(filled))


def test_sensor_dropout_never_blanks_every_modality():
    generator = torch.Generator().manual_seed(1)
    present = torch.ones(2000, 3, dtype=torch.bool)
    present[:500, 2] = False
    kept = drop_presence(present, 0.6, generator)
    assert kept.any(dim=1).all() and not (kept & ~present).any()
    assert 0.3 < kept[:, 0].float().mean() < 0.6  # dropped at about the given rate (plus rescues)
    x = drop_modalities(_batch(64), list(CHANNELS.values()), 0.9, torch.Generator().manual_seed(0))
    assert presence(split_modalities(x, [12, 2])).any(dim=1).all()
    assert torch.equal(drop_modalities(_batch(), [12, 2], 0.0), _batch())


def test_sensor_dropout_acts_only_in_training_mode():
    model = _late("sum")
    set_sensor_dropout(model, 0.99)
    x = _batch(32)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # eval: deterministic, nothing dropped
        model.train()
        torch.manual_seed(0)
        dropped = model(x)
    model.eval()
    with torch.no_grad():
        assert not torch.allclose(dropped, model(x))


def test_metadata_planes():
    table = pd.DataFrame(
        {"season": ["DJF", "JJA", "MAM"], "climate_zone": ["arid", "polar", "arid"], "elevation_m": [0.0, 10.0, 20.0]}
    )
    values, names = metadata_encoding(table, ["season", "climate_zone", "elevation_m"])
    assert names == ("season_sin", "season_cos", "climate_zone=arid", "climate_zone=polar", "elevation_m")
    assert np.allclose(values[:, :2], [[0, 1], [0, -1], [1, 0]], atol=1e-6)
    assert values[:, 2].tolist() == [1, 0, 1] and np.isclose(values[:, 4].mean(), 0)
    planes = constant_planes(values, 8)
    assert planes.shape == (3, 5, 8, 8) and (planes[1, 3] == 1).all()
    for bad, message in (("label", "target"), ("nope", "not in the store")):
        with pytest.raises(MetadataError, match=message):
            metadata_encoding(table, [bad])
    with pytest.raises(MetadataError, match="unknown seasons"):
        metadata_encoding(pd.DataFrame({"season": ["winter"]}), ["season"])


def test_stacked_modality_keeps_band_order_and_prefixes_clashes():
    stack = stacked_modality("s2+s1+dem", [SENTINEL2_L2A, SENTINEL1_GRD, DEM])
    assert stack.bands[:12] == SENTINEL2_L2A.bands and stack.bands[12:] == ("VV", "VH", "elevation")
    assert stack.continuous
    other = Modality(name="lidar", kind="elevation", bands=("elevation",), dtype="float32", gsd_m=(1.0,))
    assert stacked_modality("dem+lidar", [DEM, other]).bands == ("dem:elevation", "lidar:elevation")
