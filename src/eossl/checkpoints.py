"""Checkpoints in one place: what eossl writes into a pretraining checkpoint, how it is read safely,
and how encoders are rebuilt from it with their normalisation and modality metadata.

A pretraining checkpoint is Lightning's ``last.ckpt`` (so ``resume=`` keeps working) with one extra
key, ``"eossl"``: plain JSON-like data (format version, method, resolved config, the modalities and
their band statistics, and how to rebuild each exported encoder from the state dict)::

    {"format": 2, "method": "simclr", "config": {...}, "modalities": [asdict(Modality), ...],
     "stats": {"s2": {"mean": [...], "std": [...]}},
     "encoders": {"s2": {"kind": "plain", "prefix": "encoder.", "in_chans": 12},
                  "s2+s1": {"kind": "stems", "prefix": "fused_encoder.", "channels": {"s2": 12, "s1": 2}},
                  "s1": {"kind": "stem-of", "source": "s2+s1", "modality": "s1"}}}

Reading never unpickles arbitrary objects: :func:`read_checkpoint` uses ``torch.load(weights_only=True)``
with an allow-list of the few non-primitive types Lightning writes. A file carrying code (a pickled
call, e.g. ``os.system``) is refused with a one-line :class:`~eossl.errors.CheckpointError` naming the
file, and nothing in it runs.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from eossl.data.modality import Modality
from eossl.data.normalize import BandNormalizer
from eossl.errors import CheckpointError
from eossl.models.encoders import encoder_from_config
from eossl.models.fusion import ModalityStems, StemFusedEncoder, with_modality_stems
from eossl.models.interface import Encoder

CHECKPOINT_FORMAT = 2
METADATA_KEY = "eossl"


def _safe_globals() -> list[Any]:
    """The non-primitive types a Lightning checkpoint of eossl holds (hyperparameters' dict type)."""
    from lightning.fabric.utilities.data import AttributeDict

    return [AttributeDict]


def _first_line(lines: list[str], exc: Exception) -> str:
    """The loader's reason in one line, without torch's advice to load unsafely."""
    kept = [line for line in lines if "weights_only" not in line]
    return kept[0] if kept else type(exc).__name__


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path`` as a dict of tensors and plain data, loaded without running any code
    from it; :class:`CheckpointError` naming the file when it is missing, empty, damaged or unsafe."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint '{path}' is empty (0 bytes)")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        unsafe = next((line for line in lines if "Unsupported global" in line or "GLOBAL " in line), None)
        if unsafe is None:  # not an object we refused: the bytes are not a pickle at all
            raise CheckpointError(
                f"checkpoint '{path}' is damaged or not a PyTorch checkpoint: {_first_line(lines, exc)}"
            ) from None
        raise CheckpointError(
            f"checkpoint '{path}' was refused: it holds objects that would run code when loaded ({unsafe}); "
            "only tensors and plain data are read"
        ) from None
    except Exception as exc:  # whatever the loader raises on a file that is not a sound checkpoint
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise CheckpointError(
            f"checkpoint '{path}' is damaged or not a PyTorch checkpoint: {_first_line(lines, exc)}"
        ) from None
    if not isinstance(loaded, dict):
        raise CheckpointError(f"checkpoint '{path}' holds a {type(loaded).__name__}, not a checkpoint dictionary")
    return loaded


STAT_KEYS = ("mean", "std", "p2", "p98")
"""Per-band statistics a checkpoint keeps: the normaliser's mean/std and the 2nd/98th percentiles that
let evaluation and prediction notice data scaled differently from the pretraining data."""


def encoder_metadata(
    method: str,
    config: dict[str, Any],
    modalities: list[dict[str, Any]],
    stats: dict[str, dict[str, list[float]]],
    encoders: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The ``"eossl"`` entry a method writes into its checkpoints (see the module docstring)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "method": method,
        "config": config,
        "modalities": modalities,
        "stats": {name: {k: list(s[k]) for k in STAT_KEYS if k in s} for name, s in stats.items()},
        "encoders": encoders,
    }


@dataclass
class PretrainedEncoder:
    """An encoder rebuilt from a pretraining checkpoint, with what is needed to feed it.

    ``modality`` names its input (a store modality, or ``"s2+s1"`` for the stacked input of a
    stem-fused encoder); ``modalities`` are the store modalities that input stacks, in order, and
    ``stats`` their concatenated per-band mean/std (the normaliser's) and, for checkpoints of stores
    with them, 2nd/98th percentiles.
    """

    encoder: Encoder
    normalizer: BandNormalizer
    modality: str
    method: str
    encoder_config: dict
    modalities: list[str] = field(default_factory=list)
    stats: dict[str, list[float]] = field(default_factory=dict)
    bands: list[Modality] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.modalities = self.modalities or self.modality.split("+")

    @property
    def encoder_name(self) -> str:
        return self.encoder_config["name"]


def _state_under(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def _wavelengths(meta: dict[str, Any], names: list[str] | dict[str, int]) -> list[float] | None:
    """The band centres (nm) of the checkpoint's modalities ``names`` stacked, or None when one has none."""
    declared = {m["name"]: m.get("wavelengths_nm") for m in meta["modalities"]}
    if any(not declared.get(n) for n in names):
        return None
    return [float(w) for n in names for w in declared[n]]


def _rebuild(name: str, spec: dict[str, Any], meta: dict[str, Any], state: dict, built: dict[str, Encoder],
             path: Path) -> Encoder:  # fmt: skip
    encoder_config = {**meta["config"]["encoder"], "weights_file": None}  # every weight is in the checkpoint
    kind = spec.get("kind")
    if kind == "stem-of":
        source = built.get(spec["source"])
        if not isinstance(source, StemFusedEncoder):
            raise CheckpointError(
                f"checkpoint '{path}': encoder '{name}' refers to '{spec['source']}', not a stem encoder"
            )
        return source.single(spec["modality"]).eval()
    if kind == "plain":
        encoder = encoder_from_config(encoder_config, int(spec["in_chans"]), wavelengths=_wavelengths(meta, [name]))
    elif kind == "stems":
        channels = {k: int(v) for k, v in spec["channels"].items()}
        trunk = encoder_from_config(encoder_config, sum(channels.values()), wavelengths=_wavelengths(meta, channels))
        encoder = with_modality_stems(trunk, channels)
    else:
        raise CheckpointError(f"checkpoint '{path}': encoder '{name}' has unknown kind {kind!r}")
    weights = _state_under(state, spec["prefix"])
    try:
        encoder.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint '{path}': the weights of encoder '{name}' do not fit a '{encoder_config['name']}' "
            f"encoder: {str(exc).splitlines()[0]}"
        ) from None
    return encoder.eval()


def checkpoint_metadata(
    path: str | Path, loaded: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The ``"eossl"`` metadata and the state dict of a pretraining checkpoint, read safely (``loaded``:
    the file already read with :func:`read_checkpoint`)."""
    path = Path(path)
    ckpt = read_checkpoint(path) if loaded is None else loaded
    meta = ckpt.get(METADATA_KEY)
    if not isinstance(meta, dict) or "state_dict" not in ckpt:
        raise CheckpointError(
            f"checkpoint '{path}' was not written by 'eossl pretrain' of this version "
            f"(no '{METADATA_KEY}' metadata of format {CHECKPOINT_FORMAT}; checkpoints of eossl 0.1 must be retrained)"
        )
    version = meta.get("format")
    if version != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint '{path}' has eossl checkpoint format {version}; this eossl reads {CHECKPOINT_FORMAT}"
        )
    missing = [k for k in ("method", "config", "modalities", "stats", "encoders") if k not in meta]
    if missing:
        raise CheckpointError(f"checkpoint '{path}': eossl metadata lacks {', '.join(missing)}")
    return meta, ckpt["state_dict"]


def modality_from_json(entry: dict[str, Any]) -> Modality:
    """A :class:`Modality` from its JSON form (``dataclasses.asdict`` with tuples as lists)."""
    return Modality(**{k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()})


def load_exported_encoder(folder: str | Path) -> PretrainedEncoder:
    """The encoder of a folder written by ``eossl export`` (loaded through timm's ``local-dir:``), with
    the bands and normalisation its ``config.json`` declares."""
    from eossl.models.timm_export import load_encoder_folder, read_folder_config

    folder = Path(folder)
    config = read_folder_config(folder)
    entry = config["eossl"]
    if entry.get("kind") != "encoder":
        raise CheckpointError(f"'{folder}' holds an eossl {entry.get('kind')!r} folder, not an exported encoder")
    try:
        bands = [modality_from_json(m) for m in entry["modalities"]]
        stats = {k: list(v) for k, v in entry["normalization"].items() if k in STAT_KEYS}
        name, method = entry["modality"], entry.get("pretraining", {}).get("method", "export")
        encoder_config = dict(entry["recipe"]["encoder"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"'{folder}': config.json's eossl entry is incomplete ({exc})") from None
    encoder = load_encoder_folder(folder)
    return PretrainedEncoder(encoder, BandNormalizer({name: stats}, [name]), name, method, encoder_config,
                             [m.name for m in bands], stats, bands)  # fmt: skip


def load_pretrained_encoders(checkpoint: str | Path) -> dict[str, PretrainedEncoder]:
    """Every encoder of a pretraining checkpoint, by the input it takes, with its input normalisation.

    ``checkpoint`` may also be a folder written by ``eossl export``: its one encoder, by its input.

    Single-modality methods: ``{modality: encoder}`` (for DINO the teacher). Cross-modal methods: one
    ordinary encoder per modality, anchor first (``encoders: shared``: the shared trunk with that
    modality's stem); with shared encoders also the stem-fused encoder under ``"s2+s1"`` (the modalities
    joined by ``+``), fed the stacked modalities normalised with their concatenated statistics.
    """
    path = Path(checkpoint)
    if path.is_dir():
        exported = load_exported_encoder(path)
        return {exported.modality: exported}
    meta, state = checkpoint_metadata(path)
    modalities = {m["name"]: modality_from_json(m) for m in meta["modalities"]}
    built: dict[str, Encoder] = {}
    for name, spec in sorted(meta["encoders"].items(), key=lambda item: item[1].get("kind") == "stem-of"):
        built[name] = _rebuild(name, spec, meta, state, built, path)
    out = {}
    for name in meta["encoders"]:  # the order the method wrote: anchor first
        parts = name.split("+")
        unknown = [p for p in parts if p not in meta["stats"]]
        if unknown:
            raise CheckpointError(f"checkpoint '{path}': no band statistics for {', '.join(unknown)}")
        keys = [k for k in STAT_KEYS if all(k in meta["stats"][p] for p in parts)]
        joined = {k: [v for p in parts for v in meta["stats"][p][k]] for k in keys}
        out[name] = PretrainedEncoder(
            built[name], BandNormalizer({name: joined}, [name]), name, meta["method"],
            dict(meta["config"]["encoder"]), parts, joined, [modalities[p] for p in parts if p in modalities],
        )  # fmt: skip
    return out


def load_pretrained_encoder(checkpoint: str | Path, modality: str | None = None) -> PretrainedEncoder:
    """Rebuild one encoder (for DINO: the teacher) and its input normalisation from a pretraining checkpoint.

    ``modality``: which input, for cross-modal checkpoints (see :func:`load_pretrained_encoders`); None
    gives the checkpoint's modality, or the anchor (the first of ``data.modalities``).
    """
    encoders = load_pretrained_encoders(checkpoint)
    if modality is None:
        return next(iter(encoders.values()))
    if modality not in encoders:
        raise CheckpointError(
            f"checkpoint '{checkpoint}' has no encoder for '{modality}' (it has: {', '.join(encoders)})"
        )
    return encoders[modality]


__all__ = [
    "CHECKPOINT_FORMAT",
    "ModalityStems",
    "PretrainedEncoder",
    "checkpoint_metadata",
    "encoder_metadata",
    "load_exported_encoder",
    "load_pretrained_encoder",
    "load_pretrained_encoders",
    "modality_from_json",
    "read_checkpoint",
]
