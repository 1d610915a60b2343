"""Dense decoders: every registered decoder on every pyramid layout eossl encoders give (dilated and
plain ResNet-18, ViT grids of patch 4 and 8, a detail pyramid with a full-resolution level, Swin)."""

from __future__ import annotations

import copy
from functools import cache

import pytest
import timm
import torch
from torch import nn

from eossl.errors import ConfigError, UnknownNameError
from eossl.models.decoders import (
    DECODERS,
    DecoderSpec,
    PyramidDecoder,
    build_decoder,
    decoder_from_spec,
    decoder_names,
    feature_pyramid,
    probe_pyramid,
    pyramid_and_pooled,
    pyramid_channels,
    resolve_decoder,
)
from eossl.models.encoders import TimmEncoder, build_encoder
from eossl.models.interface import Encoder

BANDS = 4


class DetailEncoder(Encoder):
    """A tiny CNN whose pyramid keeps the input resolution: levels at reductions 1, 2, 4, 8, 16."""

    def __init__(self, in_chans: int = BANDS) -> None:
        super().__init__()
        self.in_chans, self.num_features = in_chans, 16
        widths, strides, stages, channels = (4, 8, 8, 16, 16), (1, 2, 2, 2, 2), [], in_chans
        for width, stride in zip(widths, strides, strict=True):
            stages.append(nn.Sequential(nn.Conv2d(channels, width, 3, stride, 1), nn.BatchNorm2d(width), nn.ReLU()))
            channels = width
        self.stages = nn.ModuleList(stages)

    @property
    def has_pyramid(self) -> bool:
        return True

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels = []
        for stage in self.stages:
            x = stage(x)
            levels.append(x)
        return levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_pyramid(x)[-1].mean((2, 3))


def tiny_swin(size: int) -> TimmEncoder:
    """timm's swin_tiny shrunk (one block per stage, 24 channels): a real 4-level NCHW pyramid."""
    model = timm.create_model("swin_tiny_patch4_window7_224", in_chans=BANDS, num_classes=0, img_size=size,
                              window_size=2, embed_dim=24, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1))  # fmt: skip
    return TimmEncoder(model, BANDS)


ENCODERS = {
    "resnet18-os16": lambda size: build_encoder("resnet18", BANDS, output_stride=16),
    "resnet18-os32": lambda size: build_encoder("resnet18", BANDS, output_stride=32),
    "vit-p4": lambda size: build_encoder("vit_small_patch16_224", BANDS, img_size=size, patch_size=4),
    "vit-p8": lambda size: build_encoder("vit_small_patch16_224", BANDS, img_size=size, patch_size=8),
    "detail": lambda size: DetailEncoder(),
}
REDUCTIONS = {
    "resnet18-os16": (2, 4, 8, 16, 16),
    "resnet18-os32": (2, 4, 8, 16, 32),
    "vit-p4": (4,) * 12,
    "vit-p8": (8,) * 12,
    "detail": (1, 2, 4, 8, 16),
}


@cache
def encoder(kind: str, size: int) -> Encoder:
    torch.manual_seed(0)
    return ENCODERS[kind](size)


@cache
def pyramid(kind: str, size: int) -> tuple[torch.Tensor, ...]:
    """The pyramid of one ``size``-px input (eval mode, no gradients; shared by the shape tests)."""
    torch.manual_seed(1)
    with torch.no_grad():
        return tuple(encoder(kind, size).eval().forward_pyramid(torch.randn(1, BANDS, size, size)))


def spec_of(kind: str, size: int, num_outputs: int) -> DecoderSpec:
    levels = pyramid(kind, size)
    return DecoderSpec(tuple(f.shape[1] for f in levels), tuple(size / f.shape[-2] for f in levels), num_outputs, size)


def test_registered_decoders_and_names():
    assert set(DECODERS.names()) == {"fpn", "unet", "deeplabv3plus", "upernet", "upconv"}
    assert decoder_names() == ["auto", *DECODERS.names()]
    # the pre-package imports keep working
    assert callable(feature_pyramid) and callable(pyramid_and_pooled) and callable(pyramid_channels)


@pytest.mark.parametrize("kind", list(ENCODERS))
def test_probe_gives_channels_and_reductions(kind):
    channels, reductions = probe_pyramid(encoder(kind, 32), 32)
    assert reductions == REDUCTIONS[kind]
    assert DecoderSpec.probe(encoder(kind, 32), 32, 3) == spec_of(kind, 32, 3)
    assert list(channels) == encoder(kind, 32).feature_channels(32)


@pytest.mark.parametrize("kind", list(ENCODERS))
@pytest.mark.parametrize("name", sorted(DECODERS.names()))
def test_every_decoder_gives_logits_at_the_input_size(name, kind):
    """Shapes in eval mode on one image (training mode and gradients: the next test)."""
    for size in (32, 64):
        features = list(pyramid(kind, size))
        for num_outputs in (1, 5):
            decoder = decoder_from_spec(name, spec_of(kind, size, num_outputs)).eval()
            with torch.no_grad():
                out = decoder(features, (size, size))
            assert out.shape == (1, num_outputs, size, size), (name, kind, size, num_outputs)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("kind", ["resnet18-os16", "vit-p8"])
@pytest.mark.parametrize("name", sorted(DECODERS.names()))
def test_gradients_reach_the_encoder(name, kind):
    enc = copy.deepcopy(encoder(kind, 32)).train()
    decoder = build_decoder(name, enc, 32, 3)
    out = decoder(enc.forward_pyramid(torch.randn(2, BANDS, 32, 32)), (32, 32))
    out.square().mean().backward()
    first = enc.model.get_submodule(enc.first_conv).weight
    assert first.grad is not None and first.grad.abs().sum() > 0
    assert all(p.grad is not None for p in decoder.parameters())


def test_cnn_decoders_serve_other_input_sizes():
    """Built for 32-px inputs, a decoder over a CNN pyramid also decodes 48-px ones."""
    enc = encoder("resnet18-os16", 32).eval()
    with torch.no_grad():
        features = enc.forward_pyramid(torch.randn(1, BANDS, 48, 48))
        for name in DECODERS.names():
            assert build_decoder(name, enc, 32, 2).eval()(features, (48, 48)).shape == (1, 2, 48, 48)


def test_swin_goes_through_the_cnn_path():
    enc = tiny_swin(64)
    spec = DecoderSpec.probe(enc, 64, 4)
    assert spec.reductions == (4, 8, 16, 32) and not spec.single_scale
    assert resolve_decoder("auto", spec) == "unet"
    with torch.no_grad():
        features = enc.forward_pyramid(torch.randn(2, BANDS, 64, 64))
    for name in decoder_names():
        assert decoder_from_spec(name, spec)(features, (64, 64)).shape == (2, 4, 64, 64)


def test_auto_picks_unet_for_cnns_and_upconv_for_vits():
    for kind, expected in [("resnet18-os16", "unet"), ("detail", "unet"), ("vit-p4", "upconv"), ("vit-p8", "upconv")]:
        assert resolve_decoder("auto", spec_of(kind, 32, 2)) == expected
        assert type(build_decoder("auto", encoder(kind, 32), 32, 2)) is DECODERS[expected]


def test_unknown_decoder_and_option_are_named():
    with pytest.raises(UnknownNameError, match=r"unknown decoder 'segformer' \(available: auto, .*upernet"):
        build_decoder("segformer", encoder("detail", 32), 32, 2)
    with pytest.raises(ConfigError, match="decoder 'unet' has no option colour"):
        build_decoder("unet", encoder("detail", 32), 32, 2, colour="red")


def test_fpn_is_the_pyramid_decoder():
    spec = spec_of("resnet18-os16", 32, 3)
    fpn = decoder_from_spec("fpn", spec, width=32)
    old = PyramidDecoder(list(spec.channels), 3, width=32)
    old.load_state_dict(fpn.state_dict())
    features = list(pyramid("resnet18-os16", 32))
    fpn.eval(), old.eval()
    with torch.no_grad():
        assert torch.equal(fpn(features, (32, 32)), old(features, (32, 32)))


def test_width_options_change_the_size():
    spec = spec_of("resnet18-os16", 32, 11)
    small = decoder_from_spec("unet", spec, decoder_channels=(64, 32, 16, 16, 8))
    default = decoder_from_spec("unet", spec)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in default.parameters())
    upconv = decoder_from_spec("upconv", spec_of("vit-p8", 32, 2), width=64, upsample="bilinear")
    assert len(upconv.blocks) == 3  # patch 8: three 2x upsamplings
    with pytest.raises(ConfigError, match="decoder_channels"):
        decoder_from_spec("unet", spec, decoder_channels=(64, 32))
