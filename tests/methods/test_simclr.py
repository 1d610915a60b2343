from dataclasses import asdict

import numpy as np
import pytest
import torch

from eossl.config import DataConfig, PretrainConfig
from eossl.data.store import SampleStore
from eossl.methods import METHODS
from eossl.models.encoders import EncoderError, build_encoder


def _method(store_path, **overrides):
    store = SampleStore(store_path)
    cfg = PretrainConfig(data=DataConfig(store=store_path), **overrides).model_dump(mode="json")
    model = METHODS["simclr"](cfg, asdict(store.modalities["s2"]), store.stats["s2"])
    model.log = lambda *a, **k: None
    batch = {"s2": torch.from_numpy(store.read("s2", np.arange(32)).astype(np.float32) / 10000)}
    return model, batch


def test_simclr_loss_decreases_on_a_toy_batch(small_store):
    torch.manual_seed(0)
    model, batch = _method(small_store)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for step in range(8):
        loss = model.training_step(batch, step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert np.mean(losses[-3:]) < losses[0] - 0.1


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
    feature_map = encoder.forward_features(torch.zeros(1, 12, 32, 32))
    assert feature_map.shape[-1] == expected
    assert encoder(torch.zeros(2, 12, 32, 32)).shape == (2, 512)


def test_unknown_encoder_name():
    with pytest.raises(EncoderError, match="unknown encoder 'resnet181'"):
        build_encoder("resnet181", 12)
