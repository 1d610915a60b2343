"""Fusion modes for combinations of modalities, registered by name in :data:`FUSION_MODES`.

A mode builds the encoder of a stacked combination (``channels``: modality -> band count, in stacking
order) either fresh, from a factory of plain encoders (``plain(in_chans)``), or from a checkpoint's
encoders. ``stacked`` modes (``early``, ``stems``) take one encoder of the whole stack, so a checkpoint
must provide one for the combination; late modes take one encoder per modality.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from eossl.errors import EncoderError
from eossl.models.change import SiameseEncoder, SiameseFusion
from eossl.models.encoders import TimmEncoder
from eossl.models.fusion import EarlyFusionEncoder, LateFusionEncoder, LateFusionMode, StemFusedEncoder
from eossl.models.interface import Encoder
from eossl.registry import Registry

PlainFactory = Callable[[int], Encoder]


class FusionMode:
    """How one combination of modalities is fused (see the module docstring)."""

    name: ClassVar[str]
    stacked: ClassVar[bool] = True
    dates_only: ClassVar[bool] = False  # only for two dates of one place (change detection)

    def build(self, plain: PlainFactory, channels: dict[str, int], image_size: int) -> Encoder:
        """A fresh encoder of the stacked combination."""
        raise NotImplementedError

    def adopt(self, pretrained: dict[str, Encoder], combination: str, channels: dict[str, int],
              image_size: int) -> Encoder:  # fmt: skip
        """The combination's encoder from a checkpoint's ``pretrained`` encoders (by input name)."""
        return pretrained[combination]

    def refuses(self, stacked: Encoder) -> str | None:
        """Why a checkpoint's encoder of the whole stack does not fit this mode, or None."""
        return None


FUSION_MODES: Registry[type[FusionMode]] = Registry("fusion mode")


@FUSION_MODES.register("early")
class EarlyFusion(FusionMode):
    """One plain encoder on every stacked channel."""

    def build(self, plain: PlainFactory, channels: dict[str, int], image_size: int) -> Encoder:
        return EarlyFusionEncoder(plain(sum(channels.values())), channels)

    def refuses(self, stacked: Encoder) -> str | None:
        if isinstance(stacked, StemFusedEncoder):
            return "the checkpoint's fused encoder has modality stems: evaluate it with fusion mode 'stems'"
        return None


@FUSION_MODES.register("stems")
class StemFusion(FusionMode):
    """One input convolution per modality, a shared trunk (the first modality's encoder as template)."""

    def build(self, plain: PlainFactory, channels: dict[str, int], image_size: int) -> Encoder:
        template = plain(next(iter(channels.values())))
        if not isinstance(template, TimmEncoder):
            raise TypeError(f"stem fusion needs a timm encoder as template, got {type(template).__name__}")
        return StemFusedEncoder(template, channels)

    def refuses(self, stacked: Encoder) -> str | None:
        return None if isinstance(stacked, StemFusedEncoder) else "the checkpoint's fused encoder has no modality stems"


class LateFusion(FusionMode):
    """One encoder per modality; features fused by ``mode`` (concat, sum, attention)."""

    stacked = False
    mode: ClassVar[LateFusionMode]

    def build(self, plain: PlainFactory, channels: dict[str, int], image_size: int) -> Encoder:
        return LateFusionEncoder({m: plain(c) for m, c in channels.items()}, channels, self.mode, image_size)

    def adopt(self, pretrained: dict[str, Encoder], combination: str, channels: dict[str, int],
              image_size: int) -> Encoder:  # fmt: skip
        return LateFusionEncoder({m: pretrained[m] for m in channels}, channels, self.mode, image_size)


@FUSION_MODES.register("late-concat")
class LateConcat(LateFusion):
    mode = "concat"


@FUSION_MODES.register("late-sum")
class LateSum(LateFusion):
    mode = "sum"


@FUSION_MODES.register("late-attention")
class LateAttention(LateFusion):
    mode = "attention"


class SiameseFusionMode(FusionMode):
    """Two dates of one place through one shared encoder, features fused per level (change detection:
    :class:`~eossl.models.change.SiameseEncoder`); a checkpoint provides the first date's encoder."""

    stacked = False
    dates_only = True
    fusion: ClassVar[SiameseFusion]

    @staticmethod
    def _bands(channels: dict[str, int]) -> int:
        if len(channels) != 2 or len(set(channels.values())) != 1:
            raise EncoderError(f"Siamese fusion takes two dates of one sensor, got modalities {channels}")
        return next(iter(channels.values()))

    def build(self, plain: PlainFactory, channels: dict[str, int], image_size: int) -> Encoder:
        return SiameseEncoder(plain(self._bands(channels)), self.fusion)

    def adopt(self, pretrained: dict[str, Encoder], combination: str, channels: dict[str, int],
              image_size: int) -> Encoder:  # fmt: skip
        self._bands(channels)
        return SiameseEncoder(pretrained[next(iter(channels))], self.fusion)


@FUSION_MODES.register("siam-diff")
class SiameseDifference(SiameseFusionMode):
    """FC-Siam-diff: the absolute difference of the two dates' features at every level."""

    fusion = "diff"


@FUSION_MODES.register("siam-conc")
class SiameseConcatenation(SiameseFusionMode):
    """FC-Siam-conc: the two dates' features concatenated at every level."""

    fusion = "concat"
