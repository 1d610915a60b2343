"""Encoders for any sensor: detail ResNets, ViTs of any input size, Swin, the spectral reducer and the
wavelength-conditioned ViT, all behind the Encoder interface."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from eossl.config import DataConfig, PretrainConfig
from eossl.data.modality import S2_WAVELENGTHS
from eossl.errors import EncoderError
from eossl.methods.pretrain import load_pretrained_encoder, run_pretrain
from eossl.models.adapters import AdaptedEncoder, configure_trainable, count_parameters, layer_groups
from eossl.models.config import EncoderConfig
from eossl.models.encoder_zoo.spectral import SpectralEncoder, SpectralReducer
from eossl.models.encoder_zoo.wavelength_vit import WavelengthViT, estimate_bandwidths
from eossl.models.encoders import ENCODERS, TimmEncoder, encoder_from_config, is_vision_transformer, swin_window
from eossl.models.interface import Encoder

VIT = "vit_small_patch16_224"
SWIN = "swin_tiny_patch4_window7_224"
ENCODER_CONFIGS = {
    "resnet18": {"name": "resnet18"},
    "resnet50": {"name": "resnet50"},
    "resnet18-detail": {"name": "resnet18-detail"},
    "resnet50-detail": {"name": "resnet50-detail"},
    "vit_small-p4": {"name": VIT, "patch_size": 4, "img_size": 32},
    "vit_small-p8": {"name": VIT, "patch_size": 8, "img_size": 32},
    "vit_small-p16": {"name": VIT, "patch_size": 16, "img_size": 32},
    "swin_tiny": {"name": SWIN, "img_size": 32},
    "spectral+resnet18": {"name": "resnet18", "spectral_channels": 32},
    "spectral+vit_small-p8": {"name": VIT, "patch_size": 8, "img_size": 32, "spectral_channels": 32},
    "wavelength-vit-s": {"name": "wavelength-vit-s", "patch_size": 8, "img_size": 32},
}


def wavelengths(bands: int) -> list[float]:
    """Band centres (nm) for a test sensor: Sentinel-2's 12, a red/NIR pair, or an even hyperspectral grid."""
    if bands == 12:
        return list(S2_WAVELENGTHS)
    return [665.0, 842.0] if bands == 2 else np.linspace(420, 2450, bands).tolist()


def build(kind: str, bands: int) -> Encoder:
    config = EncoderConfig(**ENCODER_CONFIGS[kind]).model_dump()
    return encoder_from_config(config, bands, wavelengths=wavelengths(bands))


@pytest.fixture(scope="module")
def s2_vit() -> WavelengthViT:
    """A wavelength ViT set to Sentinel-2's 12 bands (tests that switch sensor switch it back)."""
    torch.manual_seed(0)
    return build("wavelength-vit-s", 12).eval()


@pytest.mark.parametrize("bands", [2, 12, 200])
@pytest.mark.parametrize("kind", list(ENCODER_CONFIGS))
def test_every_encoder_gives_pooled_features_a_pyramid_and_gradients(kind, bands):
    torch.manual_seed(0)
    encoder = build(kind, bands).train()
    assert isinstance(encoder, Encoder) and encoder.in_chans == bands and encoder.has_pyramid
    x = torch.randn(2, bands, 32, 32)
    pyramid, pooled = encoder.forward_pyramid_and_pooled(x)
    assert pooled.shape == (2, encoder.num_features) and torch.isfinite(pooled).all()
    assert all(f.ndim == 4 and f.shape[0] == 2 for f in pyramid)
    sizes = [f.shape[-1] for f in pyramid]
    assert sizes == sorted(sizes, reverse=True), sizes  # finest first, then equal or coarser
    assert all(f.shape[-2] == f.shape[-1] for f in pyramid)
    (pooled.sum() + sum(f.mean() for f in pyramid)).backward()
    parameters = [p for p in encoder.parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in parameters)
    assert any(p.grad.abs().sum() > 0 for p in layer_groups(encoder)[0])  # the input side learns too
    assert encoder.feature_channels(32) == [f.shape[1] for f in pyramid]
    if is_vision_transformer(ENCODER_CONFIGS[kind]["name"]):  # built for 32 px, a ViT takes 48 px too
        with torch.no_grad():
            pyramid, pooled = encoder.eval().forward_pyramid_and_pooled(torch.randn(1, bands, 48, 48))
        patch = ENCODER_CONFIGS[kind]["patch_size"]
        assert pooled.shape == (1, encoder.num_features) and pyramid[-1].shape[-1] == 48 // patch


@pytest.mark.parametrize(("name", "output_stride", "strides"), [
    ("resnet18-detail", None, [1, 2, 4, 8, 16]),
    ("resnet50-detail", 16, [1, 2, 4, 8, 16]),
    ("resnet18-detail", 8, [1, 2, 4, 8, 8]),
])  # fmt: skip
def test_detail_resnet_keeps_full_resolution_after_the_stem(name, output_stride, strides):
    encoder = encoder_from_config({"name": name, "output_stride": output_stride}, 4).eval()
    assert isinstance(encoder, TimmEncoder) and encoder.first_conv == "conv1" and len(encoder.layer_groups()) == 5
    with torch.no_grad():
        pyramid = encoder.forward_pyramid(torch.randn(2, 4, 32, 32))
    assert [32 // f.shape[-1] for f in pyramid] == strides
    assert [i["reduction"] for i in encoder.model.feature_info] == strides
    assert encoder.num_features == (512 if name == "resnet18-detail" else 2048)  # the plain model's


def test_detail_resnet_rejects_what_it_cannot_honour():
    with pytest.raises(EncoderError, match="output_stride must be 16 or 8"):
        encoder_from_config({"name": "resnet18-detail", "output_stride": 32}, 4)
    with pytest.raises(EncoderError, match="has its own stem"):
        encoder_from_config({"name": "resnet18-detail", "stem": "small"}, 4)


def test_swin_builds_for_small_patches_with_a_window_dividing_the_grid():
    assert [swin_window(g) for g in (8, 16, 56, 24)] == [4, 4, 7, 6]
    encoder = encoder_from_config({"name": SWIN, "img_size": 64}, 5).eval()
    with torch.no_grad():
        pyramid, pooled = encoder.forward_pyramid_and_pooled(torch.randn(2, 5, 64, 64))
    assert [tuple(f.shape[1:]) for f in pyramid] == [(96, 16, 16), (192, 8, 8), (384, 4, 4), (768, 2, 2)]
    assert pooled.shape == (2, 768)
    with pytest.raises(EncoderError, match="Swin transformer: set img_size/patch_size"):
        encoder_from_config({"name": SWIN, "img_size": 32, "output_stride": 16}, 5)
    with pytest.raises(EncoderError, match="not a multiple of 8 x patch_size"):
        encoder_from_config({"name": SWIN, "img_size": 40}, 5)


def test_registered_names_are_classified_without_timm():
    assert {"resnet18-detail", "resnet50-detail", "wavelength-vit-s", "wavelength-vit-b"} <= set(ENCODERS)
    assert is_vision_transformer("wavelength-vit-s") and is_vision_transformer(VIT)
    assert not is_vision_transformer("resnet18-detail") and not is_vision_transformer(SWIN)
    assert not is_vision_transformer("no-such-encoder")


def test_spectral_reducer_has_about_56k_parameters_for_any_band_count():
    reducers = [SpectralReducer() for _ in range(3)]
    assert {count_parameters(r) for r in reducers} == {55_536}  # SpectralEarth's adapter: 56,192
    for reducer, bands in zip(reducers, (2, 12, 202), strict=True):
        out = reducer(torch.randn(2, bands, 8, 8))
        assert out.shape == (2, 32, 8, 8) and torch.isfinite(out).all()


@pytest.mark.parametrize("bands", [5, 202, 230])
def test_spectral_reducer_is_a_per_pixel_1d_convolution(bands):
    """The batched-product implementation equals Conv1d over each pixel's zero-padded spectrum
    (in training, with batch statistics, and at inference, with the BatchNorm folded in)."""
    torch.manual_seed(0)
    reducer = SpectralReducer(8)
    x = torch.randn(2, bands, 4, 3)

    def reference(x: torch.Tensor) -> torch.Tensor:
        spectra = x.permute(0, 2, 3, 1).reshape(-1, 1, bands)  # [B*H*W, 1, C]
        for conv, norm in zip(reducer.convs, reducer.norms, strict=True):
            spectra = F.pad(spectra, (0, -spectra.shape[-1] % conv.kernel_size[0]))
            spectra = F.relu(norm(conv(spectra)))
        out = reducer.project(spectra.mean(-1, keepdim=True))
        return out.reshape(2, 4, 3, -1).permute(0, 3, 1, 2)

    for training in (True, False):
        reducer.train(training)
        with torch.no_grad():
            expected = reference(x)
            assert torch.allclose(reducer(x), expected, atol=1e-5)


def test_spectral_adapter_mode_trains_only_the_encoders_own_reducer():
    encoder = build("spectral+resnet18", 202)
    assert isinstance(encoder, SpectralEncoder) and encoder.in_chans == 202 and encoder.backbone.in_chans == 32
    trained = configure_trainable(encoder, "spectral")
    assert trained is encoder
    assert count_parameters(trained) == count_parameters(encoder.reducer) == 55_536
    x = torch.randn(2, 202, 32, 32)
    trained(x).sum().backward()
    assert all(p.grad is not None for p in encoder.reducer.parameters())
    assert all(p.grad is None for p in encoder.backbone.parameters())
    # first-layers: the reducer is the first group, the backbone's stem the second
    first = configure_trainable(build("spectral+resnet18", 202), "first-layers", first_layers=1)
    assert count_parameters(first) == 55_536
    # an encoder without a reducer keeps a new residual adapter in front
    assert isinstance(configure_trainable(build("resnet18", 12), "spectral"), AdaptedEncoder)


def test_spectral_channels_must_be_positive_and_not_under_a_wavelength_encoder():
    with pytest.raises(ValidationError, match="spectral_channels"):
        EncoderConfig(name="resnet18", spectral_channels=0)
    with pytest.raises(EncoderError, match=r"'encoder\.spectral_channels' must be a positive"):
        encoder_from_config({"name": "resnet18", "spectral_channels": -4}, 12)
    with pytest.raises(EncoderError, match="cannot follow a spectral reducer"):
        encoder_from_config({"name": "wavelength-vit-s", "spectral_channels": 32}, 12, wavelengths=S2_WAVELENGTHS)
    with pytest.raises(EncoderError, match="no single first convolution"):
        build("spectral+resnet18", 12).first_conv  # noqa: B018


def test_wavelength_vit_embeds_a_band_set_it_never_saw(s2_vit):
    encoder = s2_vit
    made_up = [400.0, 555.5, 1000.0, 1234.0, 2300.0]
    encoder.set_wavelengths(made_up)
    assert encoder.in_chans == 5
    x = torch.randn(2, 5, 32, 32)
    with torch.no_grad():
        features = encoder(x)
        assert features.shape == (2, 384) and torch.isfinite(features).all()
        encoder.set_wavelengths(S2_WAVELENGTHS)
        assert torch.allclose(encoder(x, wavelengths=made_up), features, atol=1e-5)  # a one-call override
        assert encoder.in_chans == 12
    with pytest.raises(EncoderError, match="has 5 bands but the wavelength embedding has 12"):
        encoder(x)
    assert torch.allclose(estimate_bandwidths(torch.tensor([500.0, 510.0, 530.0])), torch.tensor([10.0, 10.0, 20.0]))


def test_wavelength_vit_weights_load_across_band_counts(s2_vit):
    s2 = s2_vit
    enmap = build("wavelength-vit-s", 202).eval()
    assert isinstance(enmap, WavelengthViT) and enmap.in_chans == 202
    assert s2.state_dict().keys() == enmap.state_dict().keys()
    enmap.load_state_dict(s2.state_dict())  # strict: nothing depends on the band count
    x = torch.randn(2, 12, 32, 32)
    with torch.no_grad():
        assert torch.isfinite(enmap(torch.randn(2, 202, 32, 32))).all()
        enmap.set_wavelengths(S2_WAVELENGTHS)
        assert torch.allclose(enmap(x), s2(x), atol=1e-5)


def test_wavelength_vit_needs_wavelengths(s2_vit):
    with pytest.raises(EncoderError, match="declares no wavelengths_nm"):
        encoder_from_config({"name": "wavelength-vit-s", "img_size": 32}, 2)
    with pytest.raises(EncoderError, match="3 wavelengths for 2 bands"):
        encoder_from_config({"name": "wavelength-vit-s", "img_size": 32}, 2, wavelengths=[500, 600, 700])
    with pytest.raises(EncoderError, match="positive numbers of nm"):
        s2_vit.set_wavelengths([500, -1])
    assert s2_vit.in_chans == 12  # a refused band set changes nothing
    with pytest.raises(EncoderError, match="no single first convolution"):
        s2_vit.first_conv  # noqa: B018


def test_wavelength_vit_pretrains_with_mae_and_reloads_with_its_wavelengths(small_store, tmp_path):
    """MAE masks the tokens of the wavelength embedding as of any timm ViT (methods that call
    ``encoder(x)``, e.g. SimCLR, need nothing special: see the gradient test above)."""
    cfg = PretrainConfig(
        out=tmp_path / "mae",
        data=DataConfig(store=small_store, batch_size=8),
        method={"name": "mae", "decoder_dim": 32, "decoder_depth": 1},
        encoder={"name": "wavelength-vit-s", "patch_size": 8},
        trainer={"max_steps": 1, "progress_bar": False, "log_every_n_steps": 1},
        health={"every_n_steps": 1, "knn_every_n_steps": 0},
    )
    pretrained = load_pretrained_encoder(run_pretrain(cfg))
    assert isinstance(pretrained.encoder, WavelengthViT)
    assert pretrained.encoder.patch_embed.wavelengths.tolist() == list(pretrained.bands[0].wavelengths_nm)
    with torch.no_grad():
        assert torch.isfinite(pretrained.encoder(torch.zeros(2, pretrained.encoder.in_chans, 32, 32))).all()
