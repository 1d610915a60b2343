"""The ``eossl`` entry of exported folders: what a model takes (modalities, bands, units, per-band
normalisation) and where it comes from, as plain JSON data, and how to read it back."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import eossl
from eossl.checkpoints import modality_from_json
from eossl.data.modality import Modality
from eossl.errors import CheckpointError

FOLDER_FORMAT = 1
NORMALISATION_RULE = "(x - mean) / std on physical values x = (stored + offset) / scale, per band"


def input_metadata(bands: Sequence[Modality], stats: Mapping[str, Sequence[float]], image_size: int) -> dict[str, Any]:
    """The input description of a model fed ``bands`` (the modalities it stacks, in order) normalised
    with ``stats`` (concatenated per-band ``mean``/``std``, and ``p2``/``p98`` where known)."""
    names = [b for m in bands for b in m.bands]
    for key, values in stats.items():
        if len(values) != len(names):
            raise ValueError(f"normalisation '{key}' has {len(values)} values for {len(names)} bands {names}")
    described = [
        {"modality": m.name, "name": band, "wavelength_nm": m.wavelengths_nm[i] if m.wavelengths_nm else None,
         "gsd_m": m.gsd_m[i] if i < len(m.gsd_m) else m.gsd_m[0], "units": m.units}
        for m in bands for i, band in enumerate(m.bands)
    ]  # fmt: skip
    normalization = {k: [float(v) for v in values] for k, values in stats.items()}
    return {
        "modality": "+".join(m.name for m in bands),
        "modalities": [_modality_json(m) for m in bands],
        "bands": described,
        "normalization": {**normalization, "rule": NORMALISATION_RULE},
        "image_size": int(image_size),
    }


def _modality_json(modality: Modality) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(modality).items()}


def folder_entry(kind: str, inputs: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """The ``eossl`` entry of a folder of ``kind`` (``encoder`` or ``task-model``)."""
    return {"format": FOLDER_FORMAT, "kind": kind, "eossl_version": eossl.__version__, **inputs, **extra}


def modalities_of(entry: Mapping[str, Any], where: str) -> list[Modality]:
    """The input modalities an ``eossl`` entry declares, in stacking order."""
    try:
        return [modality_from_json(m) for m in entry["modalities"]]
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{where}: the 'eossl' entry does not describe its input modalities ({exc})") from None


def check_entry(entry: Mapping[str, Any], kind: str, where: str) -> None:
    """Refuse an ``eossl`` entry of another kind or format, naming ``where`` it came from."""
    if entry.get("kind") != kind:
        raise CheckpointError(f"{where} holds an eossl {entry.get('kind', 'unknown')!r} folder, not a {kind!r} one")
    if entry.get("format") != FOLDER_FORMAT:
        found = entry.get("format")
        raise CheckpointError(f"{where} has eossl folder format {found}; this eossl reads {FOLDER_FORMAT}")
