"""The pretrained encoder(s) of ``checkpoint``, reported under their method's name (e.g. ``simclr``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

from eossl.checkpoints import PretrainedEncoder
from eossl.data.normalize import BandNormalizer, check_scaling, product_mismatches
from eossl.data.targets import Pair
from eossl.errors import ConfigError, EncoderError
from eossl.evaluation.context import Evaluation
from eossl.evaluation.inits._base import Init
from eossl.evaluation.registry import INITS
from eossl.evaluation.sink import Setting
from eossl.models.change import widen_first_conv
from eossl.models.encoders import TimmEncoder
from eossl.models.fusion import EarlyFusionEncoder
from eossl.models.fusion_modes import FUSION_MODES
from eossl.models.interface import Encoder


def with_pair_dates(pretrained: dict[str, PretrainedEncoder], pairs: Iterable[Pair],
                    early: bool) -> dict[str, PretrainedEncoder]:  # fmt: skip
    """``pretrained`` plus, for every store pair whose first date the checkpoint has an encoder for, the
    second date (the same sensor: the same encoder and normalisation) and, with ``early``, the early-fusion
    encoder of both dates (the first convolution widened, :func:`~eossl.models.change.widen_first_conv`)."""
    out = dict(pretrained)
    for pair in pairs:
        first = out.get(pair.before)
        if first is None or pair.after in out:
            continue
        out[pair.after] = dataclasses.replace(first, modality=pair.after, modalities=[pair.after])
        both = f"{pair.before}+{pair.after}"
        if early and both not in out and isinstance(first.encoder, TimmEncoder):
            bands = first.encoder.in_chans
            try:
                widened = widen_first_conv(first.encoder)
            except EncoderError:  # no single input convolution (e.g. wavelength-conditioned): early is skipped
                continue
            encoder = EarlyFusionEncoder(widened, {pair.before: bands, pair.after: bands})
            stats = {key: list(values) * 2 for key, values in first.stats.items()}
            out[both] = PretrainedEncoder(
                encoder, BandNormalizer({both: stats}, [both]), both, first.method, first.encoder_config,
                [pair.before, pair.after], stats, list(first.bands) * 2,
            )  # fmt: skip
    return out


@INITS.register("checkpoint")
class CheckpointInit(Init):
    """A checkpoint provides the encoders of the modalities it was pretrained on (and, for shared-encoder
    cross-modal pretraining, the stem-fused encoder of its combination); a setting it cannot provide is
    skipped with the reason logged."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._checked: set[str] = set()  # modalities whose data scaling was compared with the checkpoint's

    def check(self) -> None:
        if self.cfg.checkpoint is None:
            raise ConfigError("'inits' contains 'checkpoint' but 'checkpoint' is not set")

    def label(self) -> str:
        return next(iter(self.pretrained.values())).method

    def source(self) -> Path:
        return Path(self.cfg.checkpoint)

    def unavailable(self, setting: Setting) -> str | None:
        stacked = setting.fusion == "none" or FUSION_MODES[setting.fusion].stacked
        needed = [setting.name] if stacked else list(setting.combo)
        missing = [m for m in needed if m not in self.pretrained]
        if missing:
            return f"the checkpoint has no encoder for {', '.join(missing)} (it has {', '.join(self.pretrained)})"
        if setting.fusion != "none" and stacked:
            return FUSION_MODES[setting.fusion]().refuses(self.pretrained[setting.name].encoder)
        return None

    def stats(self, modality: str, evaluation: Evaluation) -> dict[str, list[float]]:
        """The checkpoint's normalisation of ``modality`` (the store's for modalities it lacks), with a
        loud warning, once per modality, when the store's data looks differently scaled."""
        if modality not in self.pretrained:
            return evaluation.data.stats[modality]
        pretrained = self.pretrained[modality]
        if modality not in self._checked and modality in evaluation.data.store.stats:
            self._checked.add(modality)
            data = evaluation.data.store.stats[modality]
            bands = evaluation.data.store.modalities[modality].bands
            for problem in (
                *product_mismatches(pretrained.bands, evaluation.data.store.modalities[modality]),
                check_scaling(f"checkpoint '{self.cfg.checkpoint}', modality '{modality}'", pretrained.stats, data,
                              bands),
            ):  # fmt: skip
                if problem:
                    evaluation.log(f"  WARNING {problem}")
        return pretrained.stats

    def encoder(self, setting: Setting, evaluation: Evaluation) -> Encoder:
        if setting.fusion == "none":
            return self.pretrained[setting.name].encoder
        encoders = {name: p.encoder for name, p in self.pretrained.items()}
        mode = FUSION_MODES[setting.fusion]()
        return mode.adopt(encoders, setting.name, evaluation.data.channels(setting.combo), evaluation.data.image_size)
