"""The training layout (channels-last weights, tiny-map convolutions as one GEMM) changes speed only:
the same outputs, losses and gradients as the plain model, the same state-dict keys."""

import copy
from dataclasses import asdict

import pytest
import torch
from torch import nn

from eossl.config import DataConfig, PretrainConfig
from eossl.data.sensors import SENSORS
from eossl.methods import METHODS
from eossl.models.small_map_conv import SmallMapConv2d, use_small_map_convolutions


@pytest.mark.parametrize(
    ("shape", "conv"),
    [
        ((6, 32, 2, 2), dict(in_channels=32, out_channels=16, kernel_size=3, padding=1)),
        ((6, 16, 4, 4), dict(in_channels=16, out_channels=24, kernel_size=3, stride=2, padding=1, bias=True)),
        ((3, 8, 3, 4), dict(in_channels=8, out_channels=8, kernel_size=(3, 1), padding=(0, 0))),
        ((4, 8, 5, 5), dict(in_channels=8, out_channels=4, kernel_size=3, dilation=2, padding=0)),
    ],
)
def test_small_map_conv_equals_conv2d(shape, conv):
    torch.manual_seed(0)
    reference = nn.Conv2d(**conv, **({} if "bias" in conv else {"bias": False}))
    fast = copy.deepcopy(reference)
    assert use_small_map_convolutions(fast) == 1 and isinstance(fast, SmallMapConv2d)
    x = torch.randn(*shape, requires_grad=True)
    assert fast.takes_gemm_path(x)  # every case here has an output map of at most 4 pixels
    y_ref, y_fast = reference(x), fast(x)
    assert y_fast.shape == y_ref.shape
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y_ref)
    grads_ref = torch.autograd.grad(y_ref, [x, *reference.parameters()], g)
    grads_fast = torch.autograd.grad(y_fast, [x, *fast.parameters()], g)
    for a, b in zip(grads_fast, grads_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert fast.state_dict().keys() == reference.state_dict().keys()


def test_large_maps_stay_on_conv2d():
    conv = SmallMapConv2d(4, 4, 3, padding=1)
    assert not conv.takes_gemm_path(torch.zeros(1, 4, 8, 8))
    assert not SmallMapConv2d(4, 4, 1).takes_gemm_path(torch.zeros(1, 4, 2, 2))  # 1x1: already a GEMM


def _simclr():
    stats = {"s2": {"mean": [0.15] * 12, "std": [0.08] * 12, "p2": [0.01] * 12, "p98": [0.45] * 12}}
    cfg = PretrainConfig(
        data=DataConfig(store="unused"), method={"name": "simclr", "hidden_dim": 64, "projection_dim": 32},
        encoder={"name": "resnet18", "output_stride": 32},
    )  # fmt: skip
    model = METHODS["simclr"](cfg.model_dump(mode="json"), [asdict(SENSORS["s2-l2a"])], stats)
    model.log = lambda *a, **k: None
    return model


def test_configured_model_trains_like_the_plain_one():
    """One SimCLR step from the same weights, data and random state: loss and gradients agree (fp32)."""
    torch.manual_seed(0)
    plain = _simclr()
    fast = copy.deepcopy(plain)
    fast.configure_model()
    fast.configure_model()  # idempotent
    assert fast.state_dict().keys() == plain.state_dict().keys()
    first_conv = next(m for m in fast.encoder.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = {"s2": torch.rand(8, 12, 64, 64) * 0.45}  # 64 px at stride 32: the last stage has 2x2 maps
    losses, grads = [], []
    for model in (plain, fast):
        torch.manual_seed(1)  # the same augmentation draws
        loss = model.training_step(x, 0)
        losses.append(loss)
        grads.append(torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad]))
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    for a, b in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
