"""TorchGeo's pretrained weights (e.g. SSL4EO-S12 MoCo ResNet-18) as a baseline init, reported under
``torchgeo.label``. The weights are read from a local file, never downloaded; their input convolution is
mapped to the store's bands by name and TorchGeo's own normalisation is reproduced in physical units."""

from __future__ import annotations

import difflib
import logging
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch
from pydantic import BaseModel, ConfigDict

from eossl.data.modality import Modality
from eossl.data.store import SampleStore
from eossl.errors import ConfigError, EncoderError
from eossl.evaluation.context import Evaluation
from eossl.evaluation.inits._base import FreshInit
from eossl.evaluation.registry import INITS
from eossl.evaluation.sink import Setting
from eossl.models.encoders import encoder_from_config
from eossl.models.interface import Encoder


class TorchGeoInitConfig(BaseModel):
    """``torchgeo:``: ``weights`` names TorchGeo weights, as ``ResNet18_Weights.SENTINEL2_ALL_MOCO`` or
    ``RESNET18_SENTINEL2_ALL_MOCO``; ``file`` is their local ``.pth`` (default: where torch hub caches
    it, ``<torch hub dir>/checkpoints/<file name of the weights' URL>``); ``label`` names the init."""

    model_config = ConfigDict(extra="forbid")
    weights: str
    file: Path | None = None
    label: str = "torchgeo"


def band_key(name: str) -> str:
    """A band name as matched: upper case without leading zeros (``B02`` -> ``B2``, ``B8a`` -> ``B8A``)."""
    key = name.strip().upper()
    match = re.fullmatch(r"B0*(\d+)(A?)", key)
    return f"B{match.group(1)}{match.group(2)}" if match else key


def _torchgeo() -> Any:
    try:
        import torchgeo.models as models
    except ImportError as exc:
        raise ConfigError(f"the 'torchgeo' init needs TorchGeo ({exc}): pip install 'eossl[torchgeo]'") from None
    return models


def resolve_weights(name: str) -> tuple[str, Any]:
    """``(model, weights)``: the TorchGeo weights enum member called ``name`` (either form) and the model
    it is registered under (e.g. ``resnet18``); an unknown name is a ConfigError listing close names."""
    models = _torchgeo()
    catalogue: dict[str, tuple[str, Any]] = {}
    for model in models.list_models():
        try:
            members = list(models.get_model_weights(model))
        except Exception:  # a listed model without a weights enum
            continue
        for member in members:
            catalogue.setdefault(f"{model}_{member.name}".upper(), (model, member))
    if "." in name:
        try:
            weights = models.get_weight(name)
        except Exception:
            weights = None
        found = next((entry for entry in catalogue.values() if entry[1] is weights), None)
    else:
        found = catalogue.get(name.strip().upper())
    if found is None:
        names = [*catalogue, *(f"{type(w).__name__}.{w.name}" for _, w in catalogue.values())]
        close = difflib.get_close_matches(name if "." in name else name.upper(), names, n=5, cutoff=0.5)
        raise ConfigError(f"torchgeo.weights: unknown TorchGeo weights '{name}' (close: {', '.join(close) or 'none'})")
    return found


def band_picks(weights_bands: Sequence[str], modality: Modality, what: str) -> list[int]:
    """The weights' channel of each of ``modality``'s bands, matched by name (see :func:`band_key`)."""
    index = {band_key(b): i for i, b in enumerate(weights_bands)}
    missing = [b for b in modality.bands if band_key(b) not in index]
    if missing:
        raise ConfigError(f"TorchGeo weights {what} have no band {', '.join(missing)} of modality "
                          f"'{modality.name}' (their bands: {', '.join(weights_bands) or 'not declared'})")  # fmt: skip
    return [index[band_key(b)] for b in modality.bands]


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a TorchGeo ``.pth`` (a plain state dict, never unpickled code; nested under
    ``state_dict`` or prefixed by ``backbone.``/``model.``/``module.`` on every key is undone)."""
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"torchgeo weights file '{path}' cannot be read as a state dict: {exc}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)} if isinstance(state, dict) else {}
    for prefix in ("backbone.", "model.", "module."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _short(values: torch.Tensor) -> str:
    """``values`` for a log line: one number when all are equal, else the first few."""
    numbers = [f"{v:g}" for v in values.tolist()]
    return numbers[0] if len(set(numbers)) == 1 else f"[{', '.join(numbers[:4])}{', ...' * (len(numbers) > 4)}]"


@INITS.register("torchgeo")
class TorchGeoInit(FreshInit):
    """TorchGeo weights of one sensor: the architecture is the weights' timm model (the rest of
    ``encoder`` is kept), the input convolution takes the store's bands by name (weights bands the store
    lacks are dropped), inputs are normalised like TorchGeo's transforms (its DN as physical x scale) and
    BatchNorm statistics are re-estimated like every fresh init. Fused settings are refused."""

    baseline = True
    config = TorchGeoInitConfig
    argument = "weights"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._resolved: tuple[str, Any] | None = None
        self._store: dict[str, Modality] | None = None
        self._logged: set[str] = set()
        self._building: Modality | None = None

    def _log_once(self, evaluation: Evaluation, key: str, message: str) -> None:
        if key not in self._logged:
            self._logged.add(key)
            evaluation.log(f"  torchgeo: {message}")

    def weights(self) -> Any:
        """The TorchGeo weights enum member of ``torchgeo.weights``."""
        if self._resolved is None:
            self._resolved = resolve_weights(self.cfg.torchgeo.weights)
        return self._resolved[1]

    def architecture(self) -> str:
        """The timm model of the weights: ``meta["model"]``, or the model they are registered under
        when that is a timm model and differs (TorchGeo's meta is wrong for a few weights)."""
        meta = self.weights().meta.get("model")
        for name in (self._resolved[0], meta):
            if name and timm.is_model(name):
                return name
        raise ConfigError(f"torchgeo.weights '{self.cfg.torchgeo.weights}' are a '{meta}', not a timm model")

    def check(self) -> None:
        if self.cfg.torchgeo is None:
            raise ConfigError("'inits' contains 'torchgeo' but 'torchgeo.weights' is not set")
        self.architecture()
        store = self._modalities()
        singles = [c[0] for c in self.cfg.combinations() if len(c) == 1]
        if not singles:
            raise ConfigError("the torchgeo init serves single modalities; 'modalities' lists only combinations")
        problems = [self.unavailable(Setting((m,)), store) for m in singles if m in store]
        if problems and all(problems):  # not one evaluated modality fits the weights
            raise ConfigError("; ".join(p for p in problems if p))
        if not self.weights_file().is_file():
            raise ConfigError(f"torchgeo weights file '{self.weights_file()}' does not exist: download it from "
                              f"{self.weights().url} (eossl never downloads) and set 'torchgeo.file'")  # fmt: skip

    def label(self) -> str:
        return self.cfg.torchgeo.label

    def weights_file(self) -> Path:
        """The local TorchGeo file: ``torchgeo.file``, else torch hub's cache path of the weights' URL."""
        if self.cfg.torchgeo.file is not None:
            return Path(self.cfg.torchgeo.file)
        return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(self.weights().url).path).name

    def source(self) -> Path:
        return self.weights_file()

    def _modalities(self) -> dict[str, Modality]:
        if self._store is None:
            self._store = dict(SampleStore(self.cfg.data.store).modalities)
        return self._store

    def picks(self, modality: Modality) -> list[int]:
        """The weights' input channel of each band of ``modality`` (:func:`band_picks`)."""
        return band_picks(self.weights().meta.get("bands") or (), modality, self.cfg.torchgeo.weights)

    def unavailable(self, setting: Setting, modalities: dict[str, Modality] | None = None) -> str | None:
        """Why ``setting`` cannot be built: fused, or bands the weights lack (``modalities``: the store's)."""
        modalities = self._modalities() if modalities is None else modalities
        if setting.fusion != "none":
            return "TorchGeo weights are for one sensor; fused settings are not built"
        if setting.name not in modalities:
            return f"'{setting.name}' has no named bands to map onto the weights"
        try:
            self.picks(modalities[setting.name])
        except ConfigError as exc:
            return str(exc)
        return None

    def encoder_config(self, evaluation: Evaluation) -> dict:
        """``encoder`` (never a checkpoint's) with the weights' architecture as its name."""
        config = self.cfg.encoder.with_img_size(evaluation.data.image_size).model_dump()
        name = self.architecture()
        if config["name"] != name:
            self._log_once(evaluation, "arch", f"the weights are a {name}: it replaces encoder.name '{config['name']}'")
        if config.get("spectral_channels"):
            self._log_once(evaluation, "spectral", "encoder.spectral_channels is ignored (bands are mapped by name)")
        return {**config, "name": name, "spectral_channels": None}

    def normalisation(self) -> tuple[torch.Tensor, torch.Tensor, list[str]] | None:
        """TorchGeo's Normalize steps composed into one ``(mean, std)`` per weights band (in DN) and the
        other steps, which are not applied; None when the transforms have no Normalize."""
        count = len(self.weights().meta.get("bands") or ()) or 1
        mean, std = torch.zeros(count, dtype=torch.float64), torch.ones(count, dtype=torch.float64)
        found, skipped = False, []
        for module in self.weights().transforms.modules():
            kind, flags = type(module).__name__, getattr(module, "flags", {})  # kornia keeps mean/std in flags
            if kind == "Normalize":
                m, s = (torch.as_tensor(flags[k] if getattr(module, k, None) is None else getattr(module, k),
                                        dtype=torch.float64).flatten() for k in ("mean", "std"))  # fmt: skip
                if {m.numel(), s.numel()} - {1, count}:
                    raise ConfigError(f"TorchGeo weights {self.cfg.torchgeo.weights}: a Normalize of "
                                      f"{m.numel()} values does not fit their {count} bands")  # fmt: skip
                mean, std, found = mean + std * m, std * s, True  # (((x - M) / S) - m) / s
            elif kind != "Identity" and not list(module.children()):
                skipped.append(kind)
        return (mean, std, skipped) if found else None

    def stats(self, modality: str, evaluation: Evaluation) -> dict[str, list[float]]:
        """TorchGeo's normalisation in physical units, per store band: ``mean / scale``, ``std / scale``
        (TorchGeo's DN taken as physical x scale); the store's statistics when it has no Normalize."""
        store, composed = evaluation.data.modalities[modality], self.normalisation()
        if composed is None:
            self._log_once(evaluation, modality, f"{modality}: the weights' transforms have no Normalize; "
                           "the store's statistics normalise")  # fmt: skip
            return evaluation.data.stats[modality]
        picks = self.picks(store)
        mean, std, skipped = composed[0][picks], composed[1][picks], composed[2]
        unapplied = f"; {', '.join(skipped)} not applied (the store's patches are fed)" if skipped else ""
        self._log_once(evaluation, modality, f"{modality} normalised as TorchGeo does, (DN - {_short(mean)}) / "
                       f"{_short(std)}, DN = physical x {store.scale:g}{unapplied}")  # fmt: skip
        return {"mean": (mean / store.scale).tolist(), "std": (std / store.scale).tolist()}

    def mapped_state(self, modality: Modality) -> dict[str, torch.Tensor]:
        """The weights' state dict with the input convolution's channels picked in ``modality``'s band order."""
        bands, picks, path = self.weights().meta.get("bands") or (), self.picks(modality), self.weights_file()
        first = timm.models.get_pretrained_cfg_value(self.architecture(), "first_conv")
        key = f"{first if isinstance(first, str) else first[0]}.weight"
        state = read_state(path)
        conv = state.get(key)
        if conv is None or conv.ndim != 4 or conv.shape[1] != len(bands):
            shape = "missing" if conv is None else tuple(conv.shape)
            raise ConfigError(f"torchgeo weights file '{path}': input conv '{key}' ({shape}) does not take the "
                              f"weights' {len(bands)} bands")  # fmt: skip
        return {**{k: v.contiguous() for k, v in state.items()}, key: conv[:, picks].contiguous()}

    def encoder(self, setting: Setting, evaluation: Evaluation) -> Encoder:
        reason = self.unavailable(setting, evaluation.data.modalities)
        if reason:
            raise ConfigError(f"torchgeo init on '{setting.label}': {reason}")
        self._building = evaluation.data.modalities[setting.name]
        return super().encoder(setting, evaluation)

    def plain(self, evaluation: Evaluation, bands: int, wavelengths: Sequence[float] | None = None) -> Encoder:
        """The band-mapped weights loaded by eossl's strict loader via a temporary safetensors file."""
        from safetensors.torch import save_file

        config, timm_log = self.encoder_config(evaluation), logging.getLogger("timm.models._builder")
        with tempfile.TemporaryDirectory(prefix="eossl-torchgeo-") as tmp:
            path = Path(tmp) / "weights.safetensors"
            save_file(self.mapped_state(self._building), str(path))
            level = timm_log.level
            timm_log.setLevel(logging.ERROR)  # its warning that the input conv is not the 3-band default
            try:
                return encoder_from_config({**config, "weights_file": str(path)}, bands, wavelengths=wavelengths)
            except EncoderError as exc:
                raise EncoderError(str(exc).replace(str(path), str(self.weights_file()))) from None
            finally:
                timm_log.setLevel(level)
