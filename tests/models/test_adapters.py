"""Adapter fine-tuning modes: what trains, identity at initialisation, where gradients go."""

from __future__ import annotations

import copy

import pytest
import torch

from eossl.errors import EncoderError, UnknownNameError
from eossl.models.adapters import (
    AdaptedEncoder,
    LoRALinear,
    SpectralAdapter,
    add_lora,
    configure_trainable,
    count_parameters,
    layer_groups,
)
from eossl.models.encoders import build_encoder
from eossl.models.interface import Encoder


@pytest.fixture(scope="module")
def resnet():
    return build_encoder("resnet18", 12).eval()


@pytest.fixture(scope="module")
def vit():
    return build_encoder("vit_tiny_patch16_224", 12, img_size=32, patch_size=4).eval()


def test_spectral_adapter_starts_as_identity_then_learns():
    torch.manual_seed(0)
    adapter = SpectralAdapter(12)
    x = torch.randn(2, 12, 8, 8)
    assert torch.equal(adapter(x), x)
    assert count_parameters(adapter) == (16 * 5 + 16) + (16 * 5 + 1)
    optimizer = torch.optim.SGD(adapter.parameters(), lr=0.1)
    (adapter(x) - 2 * x).pow(2).mean().backward()
    optimizer.step()
    out = adapter(x)
    assert out.shape == x.shape
    assert not torch.allclose(out, x)


def test_spectral_adapter_rejects_even_kernel():
    with pytest.raises(ValueError, match="odd"):
        SpectralAdapter(12, kernel_size=4)


def test_lora_linear_starts_equal_to_base():
    base = torch.nn.Linear(6, 9)
    lora = LoRALinear(base, rank=2, alpha=4)
    x = torch.randn(3, 6)
    assert torch.equal(lora(x), base(x))
    assert not base.weight.requires_grad
    assert lora.scale == 2


@pytest.mark.parametrize("model", ["resnet", "vit"])
def test_frozen_and_full_counts(model, request):
    encoder = request.getfixturevalue(model)
    total = count_parameters(encoder, trainable_only=False)
    assert count_parameters(configure_trainable(copy.deepcopy(encoder), "frozen")) == 0
    assert count_parameters(configure_trainable(copy.deepcopy(encoder), "full")) == total


@pytest.mark.parametrize("model", ["resnet", "vit"])
def test_spectral_trains_only_the_adapter_and_starts_unchanged(model, request):
    encoder = request.getfixturevalue(model)
    adapted = configure_trainable(copy.deepcopy(encoder), "spectral")
    assert isinstance(adapted, AdaptedEncoder)
    assert count_parameters(adapted) == count_parameters(adapted.adapter) == 177
    assert adapted.num_features == encoder.num_features and adapted.in_chans == 12
    x = torch.randn(2, 12, 32, 32)
    with torch.no_grad():
        assert torch.allclose(adapted(x), encoder(x), atol=1e-6)
    # squared: a plain sum of a ViT's pooled, LayerNorm'd features is constant, so its gradient is zero
    adapted(x).pow(2).sum().backward()
    assert all((p.grad is not None) == p.requires_grad for p in adapted.parameters())
    assert adapted.adapter.conv2.weight.grad.abs().sum() > 0
    maps = adapted.forward_pyramid(x)
    expected = encoder.forward_pyramid(x)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(maps, expected, strict=True))


def test_adapted_encoder_keeps_the_interface_and_copies(resnet):
    class Pooled(Encoder):  # an encoder without a feature pyramid
        in_chans, num_features = 3, 3

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3))

    adapted = AdaptedEncoder(SpectralAdapter(3), Pooled())
    assert not adapted.has_pyramid and adapted.in_chans == 3
    with pytest.raises(EncoderError, match="gives no feature pyramid"):
        adapted.forward_pyramid(torch.zeros(1, 3, 8, 8))
    original = AdaptedEncoder(SpectralAdapter(12), copy.deepcopy(resnet)).eval()
    copied = copy.deepcopy(original)
    with torch.no_grad():
        copied.adapter.conv2.weight.fill_(0.1)  # the copy calls its own adapter and encoder
        x = torch.randn(1, 12, 32, 32)
        assert not torch.allclose(copied.forward_pyramid(x)[-1], original.forward_pyramid(x)[-1])


def test_first_layers_trains_only_the_stem(resnet, vit):
    cnn = configure_trainable(copy.deepcopy(resnet), "first-layers", first_layers=1)
    trainable = {n.removeprefix("model.") for n, p in cnn.named_parameters() if p.requires_grad}
    assert trainable == {"conv1.weight", "bn1.weight", "bn1.bias"}
    assert count_parameters(cnn) == 64 * 12 * 7 * 7 + 2 * 64
    assert len(layer_groups(resnet)) == 5
    two = configure_trainable(copy.deepcopy(resnet), "first-layers", first_layers=2)
    assert all(
        n.startswith(("model.conv1", "model.bn1", "model.layer1")) for n, p in two.named_parameters() if p.requires_grad
    )
    tokens = configure_trainable(copy.deepcopy(vit), "first-layers", first_layers=1)
    trainable = {n.removeprefix("model.") for n, p in tokens.named_parameters() if p.requires_grad}
    assert trainable == {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"}
    assert len(layer_groups(vit)) == 14  # embeddings, 12 blocks (the last with the final norm), fc_norm


def test_lora_trains_only_lora_and_starts_unchanged(vit):
    encoder = copy.deepcopy(vit)
    lora = configure_trainable(encoder, "lora")
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_a." in n or ".lora_b." in n for n in trainable)
    assert count_parameters(lora) == 12 * (8 * 192 + 576 * 8)
    assert count_parameters(lora, trainable_only=False) == count_parameters(vit, False) + count_parameters(lora)
    x = torch.randn(2, 12, 32, 32)
    with torch.no_grad():
        assert torch.allclose(lora(x), vit(x), atol=1e-6)
    lora(x).pow(2).sum().backward()
    assert all((p.grad is not None) == p.requires_grad for p in lora.parameters())
    assert lora.model.blocks[0].attn.qkv.lora_b.weight.grad.abs().sum() > 0


def test_add_lora_counts_layers(vit):
    assert add_lora(copy.deepcopy(vit), rank=4, targets=("qkv", "proj")) == 24


def test_first_layers_gradients_stay_in_the_stem(resnet):
    encoder = configure_trainable(copy.deepcopy(resnet), "first-layers", first_layers=1)
    encoder(torch.randn(2, 12, 32, 32)).sum().backward()
    assert all((p.grad is not None) == p.requires_grad for p in encoder.parameters())


def test_clear_errors(resnet, vit):
    with pytest.raises(EncoderError, match=r"ResNet is not a ViT, use adapter mode first-layers or spectral"):
        configure_trainable(copy.deepcopy(resnet), "lora")
    with pytest.raises(
        UnknownNameError,
        match=r"unknown adapter mode 'partial' \(available: frozen, full, spectral, first-layers, lora\)",
    ):
        configure_trainable(resnet, "partial")
    with pytest.raises(ValueError, match="between 1 and 5"):
        configure_trainable(copy.deepcopy(resnet), "first-layers", first_layers=0)
    with pytest.raises(ValueError, match="between 1 and 14"):
        configure_trainable(copy.deepcopy(vit), "first-layers", first_layers=15)
    plain = torch.nn.Conv2d(12, 4, 3)
    with pytest.raises(EncoderError, match="not an eossl Encoder"):
        configure_trainable(plain, "spectral")
