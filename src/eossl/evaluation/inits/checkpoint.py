"""The pretrained encoder(s) of ``checkpoint``, reported under their method's name (e.g. ``simclr``)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable
from pathlib import Path

from eossl.checkpoints import PretrainedEncoder
from eossl.data.modality import Modality
from eossl.data.normalize import BandNormalizer, check_scaling, product_mismatches
from eossl.data.store import SampleStore
from eossl.data.targets import Pair
from eossl.errors import ConfigError, EncoderError
from eossl.evaluation.context import Evaluation
from eossl.evaluation.data import EvalData
from eossl.evaluation.inits._base import Init
from eossl.evaluation.registry import INITS
from eossl.evaluation.sink import Setting
from eossl.models.change import widen_first_conv
from eossl.models.encoder_zoo.wavelength_vit import WavelengthViT
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


def _band_list(bands: list[str]) -> str:
    """`` (B1, B2, B3)``, or `` (B1, B2, B3, ..., B12)`` for many bands; empty when there are no names."""
    if not bands:
        return ""
    shown = bands if len(bands) <= 6 else [*bands[:3], "...", bands[-1]]
    return f" ({', '.join(shown)})"


def check_bands(checkpoint: object, pretrained: PretrainedEncoder, store: str, data: list[Modality]) -> None:
    """Raise an EncoderError when ``pretrained`` cannot take the stacked bands of the store modalities
    ``data``: another number of bands, or the same bands in another order (other band names only warn,
    see :func:`~eossl.data.normalize.product_mismatches`)."""
    from eossl.evaluation.inits.torchgeo import band_key  # B02 and B2 are one band

    name = pretrained.modality
    learned = [b for m in pretrained.bands for b in m.bands]
    count = len(pretrained.stats.get("mean", ())) or len(learned)
    given = [b for m in data for b in m.bands]
    where = f"store '{store}' modality '{name}'"
    if count and count != len(given):
        raise EncoderError(
            f"checkpoint '{checkpoint}' encodes {count} bands of '{name}'{_band_list(learned)}; {where} has "
            f"{len(given)} band{'s' * (len(given) != 1)}{_band_list(given)}"
        )
    keys, store_keys = [band_key(b) for b in learned], [band_key(b) for b in given]
    if len(keys) == len(store_keys) and keys != store_keys and sorted(keys) == sorted(store_keys):
        raise EncoderError(
            f"checkpoint '{checkpoint}' encodes the bands of '{name}' in the order{_band_list(learned)}; {where} "
            f"has them in another order{_band_list(given)}: the encoder would read each band as another"
        )


@INITS.register("checkpoint")
class CheckpointInit(Init):
    """A checkpoint provides the encoders of the modalities it was pretrained on (and, for shared-encoder
    cross-modal pretraining, the stem-fused encoder of its combination); a setting it cannot provide is
    skipped with the reason logged. A wavelength-conditioned checkpoint (:class:`WavelengthViT`) also
    provides, for a single modality it was not pretrained on that declares ``wavelengths_nm``, a copy of
    its encoder set to that modality's wavelengths, normalised with the store's statistics."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._checked: set[str] = set()  # modalities whose data scaling was compared with the checkpoint's
        self._store_wavelengths: dict[str, tuple[float, ...] | None] | None = None
        self._transferred: set[str] = set()  # modalities whose wavelength transfer was logged

    def _wavelength_source(self) -> PretrainedEncoder | None:
        """The checkpoint's (anchor) encoder when it is wavelength-conditioned, else None."""
        first = next(iter(self.pretrained.values()), None)
        return first if first is not None and isinstance(first.encoder, WavelengthViT) else None

    def _new_sensor_wavelengths(self, setting: Setting) -> tuple[float, ...] | None:
        """The store's wavelengths of ``setting``'s modality when the checkpoint lacks it and a wavelength
        encoder can take it (a single modality with ``wavelengths_nm``), else None."""
        if setting.fusion != "none" or setting.name in self.pretrained or self._wavelength_source() is None:
            return None
        if self._store_wavelengths is None:
            modalities = SampleStore(self.cfg.data.store).modalities
            self._store_wavelengths = {name: m.wavelengths_nm for name, m in modalities.items()}
        return self._store_wavelengths.get(setting.name) or None

    def check(self) -> None:
        if self.cfg.checkpoint is None:
            raise ConfigError("'inits' contains 'checkpoint' but 'checkpoint' is not set")

    def check_data(self, data: EvalData) -> None:
        """Every checkpoint encoder an evaluated setting uses takes the bands of its store modalities
        (:func:`check_bands`)."""
        evaluated = {m for combo in data.combos for m in combo} | {"+".join(combo) for combo in data.combos}
        for name, pretrained in self.pretrained.items():
            parts = pretrained.modalities
            if name in evaluated and all(p in data.store.modalities for p in parts):
                check_bands(self.cfg.checkpoint, pretrained, str(data.store.path),
                            [data.store.modalities[p] for p in parts])  # fmt: skip

    def label(self) -> str:
        return next(iter(self.pretrained.values())).method

    def source(self) -> Path:
        return Path(self.cfg.checkpoint)

    def unavailable(self, setting: Setting) -> str | None:
        stacked = setting.fusion == "none" or FUSION_MODES[setting.fusion].stacked
        needed = [setting.name] if stacked else list(setting.combo)
        missing = [m for m in needed if m not in self.pretrained]
        if missing and self._new_sensor_wavelengths(setting) is not None:
            return None
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
        if setting.fusion == "none" and setting.name not in self.pretrained:
            wavelengths = self._new_sensor_wavelengths(setting)
            if wavelengths is None:
                raise ConfigError(f"checkpoint '{self.cfg.checkpoint}' has no encoder for '{setting.name}'")
            source = self._wavelength_source()
            encoder = copy.deepcopy(source.encoder)
            encoder.set_wavelengths(wavelengths)
            if setting.name not in self._transferred:
                self._transferred.add(setting.name)
                evaluation.log(
                    f"  {setting.name}: not pretrained on; the checkpoint's wavelength encoder (pretrained on "
                    f"{', '.join(self.pretrained)}) is set to its {len(wavelengths)} wavelengths and fed data "
                    "normalised with the store's statistics"
                )
            return encoder
        if setting.fusion == "none":
            return self.pretrained[setting.name].encoder
        encoders = {name: p.encoder for name, p in self.pretrained.items()}
        mode = FUSION_MODES[setting.fusion]()
        return mode.adopt(encoders, setting.name, evaluation.data.channels(setting.combo), evaluation.data.image_size)
