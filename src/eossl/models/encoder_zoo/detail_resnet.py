"""Detail-preserving ResNets: the stem keeps full resolution, the first residual block strides instead.

A ResNet stem divides the resolution by 4 (a stride-2 7x7 convolution, then a stride-2 max-pool)
before any residual block sees the image: a 32-px patch is 8x8 after it. Here the stem convolution has
stride 1, the max-pool is gone and the first block of ``layer1`` strides by 2 instead ("remove the
pooling and set stride to 1, introduce a stride of 2 in the 1st residual block"), so the first map
(after the stem) is at full resolution and every later stage runs at twice the usual resolution
(about 4x the compute of the plain model). The total stride is ``output_stride`` (None: 16, as for the
plain encoders), reached by striding layer4 instead of dilating it; 8 dilates layer4.

``forward_intermediates`` (the pyramid) gives maps at strides 1, 2, 4, 8, 16 for ``output_stride`` 16
(32-px input: 32, 16, 8, 4, 2 px). The result is an ordinary :class:`~eossl.models.encoders.TimmEncoder`
(``layer_groups``, ``first_conv``, weights files and every pretraining method work as for ``resnet18``).
"""

from __future__ import annotations

from typing import Any

from timm.models.resnet import BasicBlock, Bottleneck
from torch import nn

from eossl.errors import EncoderError
from eossl.models.encoders import ENCODERS, TimmEncoder, build_encoder

TIMM_STRIDE = {16: 32, 8: 16}
"""The timm ``output_stride`` giving a detail ResNet's total stride (its stem strides 2x less)."""


def detail_resnet(
    name: str, in_chans: int, output_stride: int | None = None, weights_file: str | None = None
) -> TimmEncoder:
    """timm ``name`` (a ResNet) with a stride-1 stem, no max-pool and a stride-2 first block (see the
    module docstring); total stride ``output_stride`` (16 or 8; None: 16).

    BasicBlock (ResNet-18/34): the block's first 3x3 convolution strides and a new 1x1 stride-2
    convolution + BatchNorm becomes its shortcut. Bottleneck (ResNet-50): its 3x3 convolution and its
    existing 1x1 shortcut convolution stride. A ``weights_file`` loads into the plain model first
    (every pretrained weight keeps its shape; the new shortcut of a BasicBlock starts fresh).
    """
    total = output_stride or 16
    if total not in TIMM_STRIDE:
        raise EncoderError(
            f"encoder '{name}-detail': output_stride must be 16 or 8 (the stem no longer strides, so the "
            f"total stride is half the plain model's at most), got {output_stride}"
        )
    encoder = build_encoder(name, in_chans, "imagenet", TIMM_STRIDE[total], weights_file=weights_file)
    model = encoder.model
    model.conv1.stride = (1, 1)
    model.maxpool = nn.Identity()
    block = model.layer1[0]
    if isinstance(block, Bottleneck):
        block.conv2.stride = (2, 2)
        block.downsample[0].stride = (2, 2)
    elif isinstance(block, BasicBlock):
        block.conv1.stride = (2, 2)
        width = block.conv2.out_channels
        where = {"device": block.conv1.weight.device, "dtype": block.conv1.weight.dtype}
        block.downsample = nn.Sequential(
            nn.Conv2d(block.conv1.in_channels, width, kernel_size=1, stride=2, bias=False, **where),
            nn.BatchNorm2d(width, **where),
        )
    else:  # pragma: no cover - every timm ResNet uses one of the two blocks
        raise EncoderError(f"encoder '{name}-detail': unknown first block {type(block).__name__}")
    block.stride = 2
    reductions = [1, 2, 4, 8, total]  # stem, layer1..layer4
    model.feature_info = [{**info, "reduction": r} for info, r in zip(model.feature_info, reductions, strict=True)]
    return encoder


def _builder(name: str):
    def build(config: dict[str, Any], in_chans: int, dynamic_img_size: bool = False) -> TimmEncoder:
        if config.get("stem", "imagenet") != "imagenet" or config.get("patch_size") is not None:
            raise EncoderError(
                f"encoder '{name}-detail' has its own stem: set output_stride only (not stem or patch_size)"
            )
        return detail_resnet(name, in_chans, config.get("output_stride"), config.get("weights_file"))

    build.__doc__ = f"``{name}-detail``: :func:`detail_resnet` of timm ``{name}``."
    build.__name__ = f"build_{name}_detail"
    return build


build_resnet18_detail = ENCODERS.register("resnet18-detail")(_builder("resnet18"))
build_resnet50_detail = ENCODERS.register("resnet50-detail")(_builder("resnet50"))

__all__ = ["build_resnet18_detail", "build_resnet50_detail", "detail_resnet"]
