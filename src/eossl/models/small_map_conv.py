"""Convolutions on tiny feature maps as one matrix product (a CPU speed-up that changes no weights).

A 64-pixel patch through a stride-32 ResNet leaves 2 x 2 maps in the last stage. oneDNN's convolution
kernels are made for large maps: on the development CPU (AMX, bf16 autocast) the weight gradient of a
512 -> 512 3 x 3 convolution on a 2 x 2 map ran at ~15 GFLOP/s, 3x slower than the same arithmetic as
one GEMM (``benchmarks/README.md``, "Where the time goes"). :class:`SmallMapConv2d` is an
``nn.Conv2d`` (same parameters, same state dict, so checkpoints and timm exports are unchanged) that
computes ``im2col(x) @ W^T`` with a single matrix product when the output map has at most
:data:`MAX_OUTPUT_PIXELS` pixels on a CPU; elsewhere (larger maps, CUDA) it is ``nn.Conv2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MAX_OUTPUT_PIXELS = 4
"""Output maps up to this many pixels take the GEMM path (measured: faster at 2 x 2, slower at 4 x 4)."""


def conv2d_as_gemm(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` as ``unfold(x) @ W^T`` (one GEMM over batch x output pixels); groups must be 1."""
    b, _, h, w = x.shape
    kh, kw = conv.kernel_size
    (sh, sw), (ph, pw), (dh, dw) = conv.stride, conv.padding, conv.dilation
    out_h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    columns = F.unfold(x, (kh, kw), dilation=(dh, dw), padding=(ph, pw), stride=(sh, sw))
    columns = columns.transpose(1, 2).reshape(b * out_h * out_w, -1)
    y = F.linear(columns, conv.weight.flatten(1), conv.bias)
    return y.view(b, out_h, out_w, -1).permute(0, 3, 1, 2)  # channels-last memory, NCHW shape


class SmallMapConv2d(nn.Conv2d):
    """``nn.Conv2d`` that runs as one GEMM on CPU when its output map is tiny (see the module docstring)."""

    def takes_gemm_path(self, x: torch.Tensor) -> bool:
        if x.device.type != "cpu" or self.groups != 1 or not isinstance(self.padding, tuple):
            return False
        if self.padding_mode != "zeros":
            return False
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        out_h = (x.shape[-2] + 2 * ph - self.dilation[0] * (kh - 1) - 1) // sh + 1
        out_w = (x.shape[-1] + 2 * pw - self.dilation[1] * (kw - 1) - 1) // sw + 1
        return out_h * out_w <= MAX_OUTPUT_PIXELS and kh * kw > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.takes_gemm_path(x):
            return conv2d_as_gemm(self, x)
        return super().forward(x)


def use_small_map_convolutions(module: nn.Module) -> int:
    """Turn every plain ``nn.Conv2d`` in ``module`` into a :class:`SmallMapConv2d`, in place (parameters,
    hooks and state-dict keys untouched); returns how many were converted."""
    converted = 0
    for child in module.modules():
        if type(child) is nn.Conv2d:
            child.__class__ = SmallMapConv2d
            converted += 1
    return converted


__all__ = ["MAX_OUTPUT_PIXELS", "SmallMapConv2d", "conv2d_as_gemm", "use_small_map_convolutions"]
