"""ImageNet-style weight files loaded offline by timm into a multispectral encoder."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed, resample_patch_embed
from timm.models import adapt_input_conv

from eossl.models.encoders import EncoderError, build_encoder, encoder_from_config


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Any attempt of timm to fetch weights from a URL or the Hugging Face hub fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"timm tried to download weights: {args}")

    for fetch in ("load_state_dict_from_url", "load_state_dict_from_hf", "download_cached_file"):
        monkeypatch.setattr(f"timm.models._builder.{fetch}", refuse)


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory):
    torch.manual_seed(1)
    state = timm.create_model("resnet18", num_classes=1000, pretrained=False).state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet18.safetensors"
    save_file(state, str(path))
    return path, state


@pytest.fixture(scope="module")
def vit_file(tmp_path_factory):
    torch.manual_seed(2)
    state = timm.create_model("vit_tiny_patch16_224", num_classes=1000, pretrained=False).state_dict()
    path = tmp_path_factory.mktemp("weights") / "vit_tiny.pth"
    torch.save(state, path)
    return path, state


def test_resnet_file_adapts_the_stem_and_drops_the_classifier(resnet_file):
    path, state = resnet_file
    encoder = build_encoder("resnet18", 12, weights_file=path)
    assert torch.equal(encoder.model.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    assert torch.equal(encoder.model.bn1.running_mean, state["bn1.running_mean"])
    assert encoder.model.conv1.weight.shape == (64, 12, 7, 7)
    assert torch.allclose(encoder.model.conv1.weight, adapt_input_conv(12, state["conv1.weight"]))
    assert torch.allclose(encoder.model.conv1.weight[:, 3:6] * 4, state["conv1.weight"])  # RGB repeated, scaled 3/12
    assert not any(name.startswith("fc") for name in encoder.model.state_dict())
    assert encoder(torch.randn(2, 12, 32, 32)).shape == (2, 512)
    assert encoder.model.pretrained_cfg["state_dict"] is None


def test_no_file_keeps_the_random_init(resnet_file):
    state = resnet_file[1]
    torch.manual_seed(1)
    encoder = build_encoder("resnet18", 12)
    assert not torch.equal(encoder.model.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    assert encoder.model.pretrained_cfg.get("file") is None


def test_config_passes_the_file_and_stems(resnet_file):
    path, state = resnet_file
    encoder = encoder_from_config({"name": "resnet18", "stem": "no-maxpool", "weights_file": str(path)}, 4)
    assert torch.allclose(encoder.model.conv1.weight, adapt_input_conv(4, state["conv1.weight"]))
    with pytest.raises(EncoderError, match="stem 'small' replaces conv1"):
        build_encoder("resnet18", 4, stem="small", weights_file=path)


def test_vit_file_is_resampled_to_small_patches(vit_file):
    path, state = vit_file
    encoder = build_encoder("vit_tiny_patch16_224", 12, img_size=32, patch_size=4, weights_file=path)
    assert torch.equal(encoder.model.blocks[3].attn.qkv.weight, state["blocks.3.attn.qkv.weight"])
    assert torch.equal(encoder.model.norm.weight, state["norm.weight"])  # the file's final norm is kept
    patch = adapt_input_conv(12, resample_patch_embed(state["patch_embed.proj.weight"], [4, 4]))
    assert torch.allclose(encoder.model.patch_embed.proj.weight, patch, atol=1e-6)
    pos = resample_abs_pos_embed(state["pos_embed"], (8, 8), num_prefix_tokens=1)
    assert torch.allclose(encoder.model.pos_embed, pos, atol=1e-6)
    assert encoder(torch.randn(2, 12, 32, 32)).shape == (2, 192)


def test_wrong_or_missing_files_fail_clearly(resnet_file, vit_file, tmp_path):
    with pytest.raises(EncoderError, match="does not exist"):
        build_encoder("resnet18", 12, weights_file=tmp_path / "nope.safetensors")
    with pytest.raises(EncoderError, match="does not fit encoder 'resnet34'"):
        build_encoder("resnet34", 12, weights_file=resnet_file[0])
    with pytest.raises(EncoderError, match="does not fit encoder 'resnet18'"):
        build_encoder("resnet18", 12, weights_file=vit_file[0])
    prefixed = tmp_path / "ssl.pth"
    torch.save({f"encoder.{k}": v for k, v in resnet_file[1].items()}, prefixed)
    with pytest.raises(EncoderError, match="Missing key"):
        build_encoder("resnet18", 12, weights_file=prefixed)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a tensor file")
    with pytest.raises(EncoderError, match="cannot read weights file"):
        build_encoder("resnet18", 12, weights_file=garbage)
