"""Encoders: timm backbones built for a modality's band count, with stems adapted to small patches.

:class:`TimmEncoder` puts a timm model behind the :class:`~eossl.models.interface.Encoder` interface
(the timm model itself is ``encoder.model``, an ordinary timm module with no classifier).
``ENCODERS`` registers encoders that are not plain timm models by name (one file each in
:mod:`eossl.models.encoder_zoo`, found without a list); any other name is looked up in timm
(:func:`encoder_from_config`). ``encoder.spectral_channels`` puts a learned spectral reducer
(:class:`eossl.models.encoder_zoo.spectral.SpectralEncoder`) in front of any of them.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import timm
import torch
from torch import nn

from eossl.errors import EncoderError, UnknownNameError
from eossl.models.interface import Encoder
from eossl.registry import Registry

Stem = Literal["imagenet", "no-maxpool", "small"]

ENCODERS: Registry = Registry("encoder", packages=("eossl.models.encoder_zoo",))
"""Encoders registered by name (a callable ``(config: dict, in_chans: int, dynamic_img_size: bool) -> Encoder``,
which may also take a keyword ``wavelengths``: the band centres in nm, or None); names not registered
are timm model names. A builder with a true ``vision_transformer`` attribute is a ViT for
:func:`is_vision_transformer` (multi-size views, LoRA)."""


class TimmEncoder(Encoder):
    """A timm backbone (``model``, no classifier) as an :class:`Encoder`: pooled features from
    ``model(x)``, the pyramid from timm's ``forward_intermediates``."""

    def __init__(self, model: nn.Module, in_chans: int) -> None:
        super().__init__()
        self.model = model
        self.in_chans = in_chans
        self.num_features = int(model.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @property
    def has_pyramid(self) -> bool:
        return callable(getattr(type(self.model), "forward_intermediates", None))

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        if not self.has_pyramid:
            return super().forward_pyramid(x)
        return list(self.model.forward_intermediates(x, intermediates_only=True))

    def forward_pyramid_and_pooled(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """One pass: timm's ``forward_intermediates`` returns the final map beside the pyramid, and
        ``forward_head(final, pre_logits=True)`` pools it as ``model(x)`` does."""
        final, pyramid = self.model.forward_intermediates(x, intermediates_only=False)
        return list(pyramid), self.model.forward_head(final, pre_logits=True)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The parameters in timm's coarse layer groups, input to output (ResNet: stem, layer1..4)."""
        from timm.models import group_parameters

        groups = group_parameters(self.model, self.model.group_matcher(coarse=True), return_values=True)
        return [groups[key] for key in sorted(groups)]

    @property
    def first_conv(self) -> str:
        """Name (inside ``model``) of the single input convolution (ResNet ``conv1``, ViT ``patch_embed.proj``)."""
        name = self.model.pretrained_cfg.get("first_conv")
        if isinstance(name, (list, tuple)):
            name = name[0]
        if not name or not isinstance(self.model.get_submodule(name), nn.Conv2d):
            raise EncoderError(f"encoder {type(self.model).__name__} has no single first convolution")
        return name


def is_vision_transformer(name: str) -> bool:
    """True for timm models built by its VisionTransformer class (vit_*, deit_*, ...) and for registered
    encoders whose builder says so (``vision_transformer = True``); False for any other name."""
    if name in ENCODERS:
        return bool(getattr(ENCODERS[name], "vision_transformer", False))
    return _timm_family(name) == "vision_transformer"


def takes_wavelengths(name: str) -> bool:
    """Whether the encoder ``name`` is built from its bands' wavelengths (a registered builder with a
    ``wavelengths`` keyword, e.g. ``wavelength-vit-s``)."""
    return name in ENCODERS and "wavelengths" in inspect.signature(ENCODERS[name]).parameters


def _timm_family(name: str) -> str | None:
    """The timm module that builds model ``name`` (``vision_transformer``, ``swin_transformer``, ...), or None."""
    if name not in timm.list_models():
        return None
    return timm.models.model_entrypoint(name).__module__.rpartition(".")[2]


def swin_window(grid: int, largest: int = 7) -> int:
    """The largest window (at most ``largest``, Swin's 7) that divides a ``grid`` x ``grid`` token map:
    4 for 32-px inputs with 4-px patches (8x8 tokens), 7 for 224 px. Later, smaller stages clamp it."""
    return max(w for w in range(1, largest + 1) if grid % w == 0)


def build_encoder(
    name: str,
    in_chans: int,
    stem: Stem = "imagenet",
    output_stride: int | None = None,
    img_size: int | None = None,
    patch_size: int | None = None,
    dynamic_img_size: bool = False,
    weights_file: str | Path | None = None,
) -> TimmEncoder:
    """A timm model with ``in_chans`` input bands, as a :class:`TimmEncoder` (pooled features ``[B, num_features]``).

    CNNs: ``stem`` adapts ResNet-style stems to small patches: ``imagenet`` keeps the stride-4 stem
    (fast), ``no-maxpool`` keeps the stride-2 convolution but drops the max-pool (4x the compute),
    ``small`` uses a 3x3 stride-1 convolution without max-pool (CIFAR-style, 16x the compute).
    ``output_stride`` 16 (or 8) dilates the last stage(s) instead of striding, so a 32-pixel patch
    still has a 2x2 (4x4) feature map at the end: on the synthetic Earth a random-init ResNet-18's
    linear probe rose from 0.31 to 0.42 accuracy with it; a fp32 SimCLR step at batch 128 went from
    216 to 123 samples/s on the 2-core CPU. ``None`` means 16 where the model supports it.

    ViTs: ``img_size`` (the patch size of the store's samples) and ``patch_size`` (tokens are
    ``patch_size`` pixels square: 4 on 32-px samples gives 64 tokens) size the positional embedding;
    features are the mean of the patch tokens. ViTs are always built with timm's
    ``dynamic_img_size``: the position embedding is interpolated, so one ViT takes any input size that
    is a multiple of its patch size (multi-crop views, another store); ``dynamic_img_size`` is kept for
    the callers that ask for it.

    Swin (``swin_*``): ``img_size`` (default 224) and ``patch_size`` (default the model's, 4) fix the
    token grid, and the attention window is the largest one up to 7 that divides it
    (:func:`swin_window`: 4 for 32 or 64 px); the pyramid is its 4 stages in NCHW.

    ``weights_file`` (a local safetensors or ``.pth`` state dict of the same timm architecture, e.g.
    ImageNet weights) initialises the encoder through timm's own pretrained loader, offline: it
    repeats the RGB input-conv weights over ``in_chans`` bands (scaled by 3/in_chans), resamples a
    ViT's patch and position embeddings to ``patch_size``/``img_size``, and the load is strict once
    the classifier is dropped, so a file of another architecture fails instead of loading partly.
    ViTs then keep the file's final ``norm`` (on the tokens, before the average pool).
    """
    if name not in timm.list_models():
        raise EncoderError(f"unknown encoder '{name}': not a timm model name (e.g. resnet18, vit_small_patch16_224)")
    pretrained: dict = {}
    if weights_file is not None:
        if stem == "small":
            raise EncoderError(f"stem 'small' replaces conv1, so the weights of '{weights_file}' would be lost")
        pretrained = _pretrained_kwargs(name, Path(weights_file))
    if is_vision_transformer(name):
        if output_stride not in (None, 32) or stem != "imagenet":
            raise EncoderError(f"encoder '{name}' is a ViT: set patch_size, not output_stride or stem")
        kwargs: dict = {"img_size": img_size or 224, "global_pool": "avg", "dynamic_img_size": True}
        if patch_size is not None:
            kwargs["patch_size"] = patch_size
        if img_size is not None and patch_size is not None and img_size % patch_size:
            raise EncoderError(f"encoder '{name}': img_size {img_size} is not a multiple of patch_size {patch_size}")
        if pretrained and "fc_norm.weight" not in pretrained["pretrained_cfg_overlay"]["state_dict"]:
            kwargs["fc_norm"] = False  # keep the file's token norm instead of a fresh norm after pooling
        model = _create(name, in_chans, pretrained, **kwargs)
    elif _timm_family(name) == "swin_transformer":
        if output_stride not in (None, 32) or stem != "imagenet":
            raise EncoderError(
                f"encoder '{name}' is a Swin transformer: set img_size/patch_size, not output_stride or stem"
            )
        size = img_size or 224
        patch = patch_size or 4  # every timm Swin embeds 4-px patches
        if size % (patch * 8):  # three patch mergings halve the grid three times
            raise EncoderError(f"encoder '{name}': img_size {size} is not a multiple of 8 x patch_size {patch}")
        swin = {"img_size": size, "patch_size": patch, "window_size": swin_window(size // patch)}
        model = _create(name, in_chans, pretrained, **swin)
    else:
        if patch_size is not None:
            raise EncoderError(f"encoder '{name}' is not a ViT: patch_size does not apply (use stem/output_stride)")
        try:
            stride = {"output_stride": output_stride or 16} if output_stride != 32 else {}
            model = _create(name, in_chans, pretrained, **stride)
        except TypeError as exc:
            if output_stride is not None:
                raise EncoderError(f"encoder '{name}' does not accept output_stride={output_stride}: {exc}") from None
            model = _create(name, in_chans, pretrained)
    if stem != "imagenet":
        if not (
            isinstance(getattr(model, "conv1", None), nn.Conv2d)
            and isinstance(getattr(model, "maxpool", None), nn.Module)
        ):
            raise EncoderError(f"stem '{stem}' needs a ResNet-style model with conv1 and maxpool; '{name}' has not")
        model.maxpool = nn.Identity()
        if stem == "small":
            width = model.conv1.out_channels
            model.conv1 = nn.Conv2d(in_chans, width, kernel_size=3, stride=1, padding=1, bias=False)
    return TimmEncoder(model, in_chans)


def _pretrained_kwargs(name: str, path: Path) -> dict:
    """timm ``create_model`` arguments that load ``path`` (read by timm's own reader) without its classifier."""
    if not path.is_file():
        raise EncoderError(f"weights file '{path}' does not exist")
    try:
        state = timm.models.load_state_dict(str(path))
    except Exception as exc:
        raise EncoderError(f"cannot read weights file '{path}': {exc}") from exc
    classifier = timm.models.get_pretrained_cfg_value(name, "classifier") or ()
    for layer in (classifier,) if isinstance(classifier, str) else classifier:
        state.pop(f"{layer}.weight", None)
        state.pop(f"{layer}.bias", None)
    # num_classes=0 on both sides keeps timm's load strict (it relaxes it when it drops a classifier itself)
    overlay = {"state_dict": state, "num_classes": 0, "custom_load": False, "file": str(path)}
    return {"pretrained": True, "pretrained_cfg_overlay": overlay}


def _create(name: str, in_chans: int, pretrained: dict, **kwargs) -> nn.Module:
    """``timm.create_model`` without a classifier, loading the weights file described by ``pretrained``."""
    if not pretrained:
        return timm.create_model(name, in_chans=in_chans, num_classes=0, pretrained=False, **kwargs)
    path = pretrained["pretrained_cfg_overlay"]["file"]
    try:
        model = timm.create_model(name, in_chans=in_chans, num_classes=0, **pretrained, **kwargs)
    except RuntimeError as exc:  # missing/unexpected keys or shape mismatches from the strict load
        raise EncoderError(f"weights file '{path}' does not fit encoder '{name}': {str(exc)[:800]}") from None
    model.pretrained_cfg = model.default_cfg = {**model.pretrained_cfg, "state_dict": None}  # free the copy
    return model


def encoder_from_config(
    config: dict, in_chans: int, dynamic_img_size: bool = False, wavelengths: Sequence[float] | None = None
) -> Encoder:
    """The encoder of an ``encoder`` config section (as saved in checkpoints): a registered encoder
    (:data:`ENCODERS`) or a timm model (:func:`build_encoder`).

    ``wavelengths``: the centre wavelengths (nm) of the ``in_chans`` bands, where the modality declares
    them; passed on to registered builders that take a ``wavelengths`` keyword (wavelength-conditioned
    encoders), ignored by the others. ``spectral_channels`` (when set) builds the named encoder for that
    many bands behind a learned :class:`~eossl.models.encoder_zoo.spectral.SpectralReducer`.
    """
    spectral = config.get("spectral_channels")
    if spectral is not None:
        from eossl.models.encoder_zoo.spectral import spectral_encoder_from_config

        return spectral_encoder_from_config(config, in_chans, dynamic_img_size, wavelengths)
    name = config["name"]
    if name in ENCODERS:
        if takes_wavelengths(name):
            return ENCODERS[name](config, in_chans, dynamic_img_size, wavelengths=wavelengths)
        return ENCODERS[name](config, in_chans, dynamic_img_size)
    if name not in timm.list_models():
        registered = ", ".join(ENCODERS.names())
        raise UnknownNameError(
            f"unknown encoder '{name}': neither a registered encoder ({registered or 'none registered'}) "
            "nor a timm model name (e.g. resnet18, vit_small_patch16_224)"
        )
    return build_encoder(
        name,
        in_chans,
        config.get("stem", "imagenet"),
        config.get("output_stride"),
        config.get("img_size"),
        config.get("patch_size"),
        dynamic_img_size,
        weights_file=config.get("weights_file"),
    )
