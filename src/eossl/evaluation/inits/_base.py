"""An encoder initialisation compared by an evaluation (checkpoint, random, external weights, image
statistics). Each registers in :data:`eossl.evaluation.registry.INITS` and may own a config section."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch
from pydantic import BaseModel

from eossl.checkpoints import PretrainedEncoder
from eossl.data.normalize import BandNormalizer
from eossl.evaluation.context import Evaluation, InitRun
from eossl.evaluation.features import recalibrate_batchnorm
from eossl.evaluation.sink import Setting
from eossl.models.encoders import encoder_from_config
from eossl.models.features import encode_batches
from eossl.models.fusion import set_sensor_dropout
from eossl.models.fusion_modes import FUSION_MODES
from eossl.models.interface import Encoder

if TYPE_CHECKING:
    from eossl.evaluation.config import EvaluateBase
    from eossl.evaluation.data import EvalData


class Init:
    """One init. ``baseline``: reported as a baseline (compared against, not the one being proven).
    ``config``: the pydantic model of its own section (named like the init), or None; ``argument``: the
    field of that section an ``inits`` entry ``NAME:VALUE`` sets (``torchgeo:RESNET18_SENTINEL2_ALL_MOCO``)."""

    name: ClassVar[str]
    baseline: ClassVar[bool] = False
    config: ClassVar[type[BaseModel] | None] = None
    argument: ClassVar[str | None] = None  # the section field ``inits: [NAME:VALUE]`` sets (torchgeo: weights)
    encodes: ClassVar[bool] = True  # False: gives features without an encoder (only feature protocols run)

    def __init__(self, cfg: EvaluateBase, pretrained: dict[str, PretrainedEncoder]) -> None:
        self.cfg, self.pretrained = cfg, pretrained

    def label(self) -> str:
        """The name this init is reported under."""
        return self.name

    def check(self) -> None:
        """Raise a ConfigError before any work when the config cannot serve this init."""

    def check_data(self, data: EvalData) -> None:
        """Raise an EosslError before any work when this init cannot take the store's data."""

    def unavailable(self, setting: Setting) -> str | None:
        """Why this init cannot be built for ``setting``, or None."""
        return None

    def source(self) -> Path | None:
        """The file this init's weights come from (its features are re-encoded when it changes)."""
        return None

    def cache_tag(self, setting: Setting) -> str:
        source = self.source()
        tag = f"{source}:{source.stat().st_mtime_ns}" if source else ""  # a replaced file is re-encoded
        return f"{self.label()}:{setting.label}:{tag}"

    def encoder_config(self, evaluation: Evaluation) -> dict:
        """The architecture of every init: the checkpoint's when one is given, else ``encoder``."""
        if self.pretrained:
            return dict(next(iter(self.pretrained.values())).encoder_config)
        return self.cfg.encoder.with_img_size(evaluation.data.image_size).model_dump()

    def stats(self, modality: str, evaluation: Evaluation) -> dict[str, list[float]]:
        return evaluation.data.stats[modality]

    def normalizer(self, setting: Setting, evaluation: Evaluation) -> BandNormalizer:
        parts = [self.stats(m, evaluation) for m in setting.combo]
        stats = {k: [v for part in parts for v in part[k]] for k in ("mean", "std")}
        return BandNormalizer({setting.name: stats}, [setting.name])

    def encoder(self, setting: Setting, evaluation: Evaluation) -> Encoder:
        """The encoder taking ``setting``'s stacked input (subclasses that encode implement it)."""
        raise NotImplementedError

    def start(self, setting: Setting, evaluation: Evaluation) -> InitRun:
        """Build this init for ``setting``: the encoder, its normaliser and how it makes features."""
        normalizer = self.normalizer(setting, evaluation)
        torch.manual_seed(0)
        encoder = self.encoder(setting, evaluation)
        if setting.fusion != "none":
            set_sensor_dropout(encoder, self.cfg.fusion.sensor_dropout)

        def featurize(batches):
            return encode_batches(encoder, normalizer, setting.name, batches, evaluation.device)

        name = self.encoder_config(evaluation)["name"]
        return InitRun(evaluation, setting, self.label(), encoder, normalizer, name, featurize, self.cache_tag(setting))


class FreshInit(Init):
    """An init that builds new encoders (random or external weights) and re-estimates their BatchNorm
    statistics on the unlabelled training images, so the baseline is not handicapped by uncalibrated
    normalisation."""

    def weights_file(self) -> Path | None:
        return None

    def plain(self, evaluation: Evaluation, bands: int, wavelengths: Sequence[float] | None = None) -> Encoder:
        config = self.encoder_config(evaluation)
        weights = self.weights_file()
        if weights is not None:
            config["weights_file"] = str(weights)
        return encoder_from_config(config, bands, wavelengths=wavelengths)

    def encoder(self, setting: Setting, evaluation: Evaluation) -> Encoder:
        channels = evaluation.data.channels(setting.combo)
        if setting.fusion == "none":
            wavelengths = evaluation.data.modalities[setting.name].wavelengths_nm
            encoder = self.plain(evaluation, channels[setting.name], wavelengths)
        else:
            mode = FUSION_MODES[setting.fusion]()
            encoder = mode.build(lambda bands: self.plain(evaluation, bands), channels, evaluation.data.image_size)
        batches = evaluation.data.inputs("train", setting.combo, 256)
        normalizer = self.normalizer(setting, evaluation)
        recalibrate_batchnorm(encoder, normalizer, setting.name, batches, evaluation.device)
        evaluation.count_filled(normalizer)
        return encoder
