"""eossl encoders as timm models: the folder timm's own ``local-dir:`` loader reads, and the timm
model ``eossl_encoder`` for encoders timm's arguments cannot express.

An encoder folder holds ``config.json`` (timm's layout: ``architecture``, ``num_features``,
``model_args``, ``pretrained_cfg``; plus an ``eossl`` entry with the bands, normalisation and
provenance) and ``model.safetensors``. ``timm.create_model("local-dir:FOLDER", pretrained=True)``
gives a model whose ``model(x)`` are the encoder's pooled features:

- a plain timm backbone (ResNet, ViT, Swin, ... with timm's stem) is exported as itself: the
  architecture and the arguments timm recorded when eossl created it (``in_chans``,
  ``output_stride``, ``img_size``, ``patch_size``, ...), loadable without eossl installed;
- any other encoder (eossl stems ``no-maxpool``/``small``, ``resnet18-detail``, wavelength-conditioned
  ViTs, spectral reducers, stem-fused encoders, fused or siamese task encoders) is exported as
  ``eossl_encoder`` with its *recipe* (the eossl encoder config, the bands per input and the fusion
  mode) in ``model_args``; ``import eossl`` registers ``eossl_encoder`` with timm, and the recipe
  rebuilds the same architecture before timm loads the weights strictly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from timm.models import load_pretrained, register_model
from torch import nn

from eossl.errors import CheckpointError

if TYPE_CHECKING:
    from eossl.models.interface import Encoder

# eossl's encoder modules are imported inside the functions: ``import timm`` registers this module
# (see ``eossl/__init__.py``), possibly while one of them is importing timm.

ARCHITECTURE = "eossl_encoder"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
RECIPE_KEYS = ("encoder", "channels", "wavelengths", "fusion", "image_size")


def encoder_recipe(config: Mapping[str, Any], channels: Mapping[str, int], image_size: int,
                   wavelengths: Mapping[str, Any] | None = None, fusion: str = "none") -> dict[str, Any]:  # fmt: skip
    """How to rebuild an encoder (random weights, same architecture): its eossl ``encoder`` config,
    the bands of each input modality in stacking order, their wavelengths (nm) where declared, the
    fusion mode of several inputs (``none`` for one) and the patch size it was trained on."""
    if fusion == "none" and len(channels) != 1:
        raise ValueError(f"an encoder of one input takes one modality, got {list(channels)}")
    return {
        "encoder": {**dict(config), "weights_file": None},
        "channels": {name: int(bands) for name, bands in channels.items()},
        "wavelengths": {k: [float(w) for w in v] for k, v in (wavelengths or {}).items() if v},
        "fusion": fusion,
        "image_size": int(image_size),
    }


def build_from_recipe(recipe: Mapping[str, Any]) -> Encoder:
    """A fresh encoder of the architecture ``recipe`` describes (see :func:`encoder_recipe`)."""
    from eossl.models.encoders import encoder_from_config
    from eossl.models.fusion_modes import FUSION_MODES

    missing = [k for k in RECIPE_KEYS if k not in recipe]
    if missing:
        raise CheckpointError(f"encoder recipe lacks {', '.join(missing)} (has: {', '.join(recipe)})")
    config = {**recipe["encoder"], "weights_file": None}
    channels = dict(recipe["channels"])
    wavelengths = recipe["wavelengths"] or {}
    if recipe["fusion"] == "none":
        ((name, bands),) = channels.items()
        return encoder_from_config(config, int(bands), wavelengths=wavelengths.get(name))
    if recipe["fusion"] not in FUSION_MODES:
        raise CheckpointError(f"encoder recipe: unknown fusion mode '{recipe['fusion']}'")
    mode = FUSION_MODES[recipe["fusion"]]()
    return mode.build(lambda bands: encoder_from_config(config, bands), channels, int(recipe["image_size"]))


def plain_timm_model(encoder: Encoder, recipe: Mapping[str, Any]) -> nn.Module | None:
    """The timm model that *is* ``encoder`` when timm's own arguments rebuild it (a timm backbone with
    timm's stem, one input, no spectral reducer), else None."""
    from eossl.models.encoders import ENCODERS, TimmEncoder

    config = recipe["encoder"]
    if (
        type(encoder) is not TimmEncoder
        or recipe["fusion"] != "none"
        or config.get("name") in ENCODERS
        or config.get("spectral_channels") is not None
        or config.get("stem", "imagenet") != "imagenet"
        or not getattr(encoder.model, "_model_args", None)
    ):
        return None
    return encoder.model


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: list(v) if isinstance(v, tuple) else str(v)))


def timm_config(encoder: Encoder, recipe: Mapping[str, Any], mean: list[float], std: list[float],
                eossl: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
    """``config.json`` of an encoder folder: timm's fields (architecture, model arguments and a
    ``pretrained_cfg`` with the normalisation and input size) plus ``eossl`` (metadata, the recipe)."""
    size = int(recipe["image_size"])
    in_chans = int(sum(recipe["channels"].values()))
    plain = plain_timm_model(encoder, recipe)
    pretrained_cfg: dict[str, Any] = {
        "tag": f"eossl-{eossl.get('pretraining', {}).get('method', 'model')}",
        "input_size": [in_chans, size, size],
        "fixed_input_size": False,
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "num_classes": 0,
    }
    if plain is not None:
        architecture = plain.pretrained_cfg.get("architecture") or type(plain).__name__
        model_args = {k: v for k, v in plain._model_args.items() if k not in ("pretrained_cfg_overlay",)}
        model_args = {**model_args, "in_chans": in_chans, "num_classes": 0}
        first_conv = plain.pretrained_cfg.get("first_conv")
        if first_conv:
            pretrained_cfg["first_conv"] = first_conv
    else:
        architecture = ARCHITECTURE
        model_args = {"recipe": dict(recipe), "in_chans": in_chans}
    return _json_safe({
        "architecture": architecture,
        "num_classes": 0,
        "num_features": int(encoder.num_features),
        "model_args": model_args,
        "pretrained_cfg": pretrained_cfg,
        "eossl": {**dict(eossl), "recipe": dict(recipe), "needs_eossl": plain is None},
    })  # fmt: skip


def write_encoder_folder(folder: Path, encoder: Encoder, config: dict[str, Any]) -> None:
    """``config.json`` and ``model.safetensors`` of ``encoder`` into (an existing, empty) ``folder``."""
    from safetensors.torch import save_file

    plain = plain_timm_model(encoder, config["eossl"]["recipe"])
    module = plain if plain is not None else encoder
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "pt", "producer": "eossl"})
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")


def read_folder_config(folder: str | Path) -> dict[str, Any]:
    """``config.json`` of an eossl encoder or task-model folder, checked to be eossl's."""
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"'{folder}' is not an exported eossl model: it has no {CONFIG_FILE}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"'{path}' is not valid JSON: {exc}") from None
    if not isinstance(config, dict) or not isinstance(config.get("eossl"), dict):
        raise CheckpointError(f"'{path}' was not written by eossl (no 'eossl' entry); it is not an eossl export")
    if not (folder / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"'{folder}' has no {WEIGHTS_FILE}: the export is incomplete")
    return config


def load_encoder_folder(folder: str | Path) -> Encoder:
    """The encoder of an exported folder, loaded by timm's ``local-dir:`` loader (weights strict)."""
    import timm

    from eossl.models.encoders import TimmEncoder
    from eossl.models.interface import Encoder

    folder = Path(folder).resolve()
    config = read_folder_config(folder)
    try:
        model = timm.create_model(f"local-dir:{folder}", pretrained=True)
    except RuntimeError as exc:
        raise CheckpointError(f"'{folder}': the weights do not fit the config: {str(exc).splitlines()[0]}") from None
    if isinstance(model, Encoder):
        return model.eval()
    return TimmEncoder(model, int(config["model_args"]["in_chans"])).eval()


@register_model
def eossl_encoder(pretrained: bool = False, recipe: dict | None = None, in_chans: int | None = None,
                  pretrained_cfg: dict | None = None, **kwargs: Any) -> Encoder:  # fmt: skip
    """timm entry point of eossl encoders: the encoder ``recipe`` describes (see
    :func:`eossl.models.timm_export.build_from_recipe`), its weights loaded strictly from the
    ``local-dir:`` folder when ``pretrained``. ``model(x)`` gives pooled features ``[B, num_features]``."""
    if recipe is None:
        raise ValueError("eossl_encoder needs model_args.recipe (write the folder with 'eossl export')")
    ignored = ("pretrained_cfg_overlay", "pretrained_model_args", "cache_dir", "num_classes")  # timm bookkeeping
    kwargs = {k: v for k, v in kwargs.items() if k not in ignored}
    if kwargs:
        raise ValueError(f"eossl_encoder: unsupported arguments {sorted(kwargs)}")
    encoder = build_from_recipe(recipe)
    if in_chans is not None and int(in_chans) != int(sum(recipe["channels"].values())):
        raise ValueError(f"eossl_encoder: in_chans {in_chans} differs from the recipe's {recipe['channels']}")
    cfg = dict(pretrained_cfg or {})
    cfg.update(architecture=ARCHITECTURE, num_classes=0)
    cfg.pop("first_conv", None)  # the input convolution is never adapted: the recipe gives its bands
    encoder.pretrained_cfg = encoder.default_cfg = cfg
    if pretrained:
        load_pretrained(encoder, pretrained_cfg=cfg, num_classes=0, in_chans=int(sum(recipe["channels"].values())))
    return encoder


def same_features(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    """Largest absolute difference of the pooled features of ``a`` and ``b`` on ``x`` (both eval)."""
    with torch.no_grad():
        return float((a.eval()(x) - b.eval()(x)).abs().max())


__all__ = [
    "ARCHITECTURE",
    "build_from_recipe",
    "encoder_recipe",
    "load_encoder_folder",
    "read_folder_config",
    "same_features",
    "timm_config",
    "write_encoder_folder",
]
