"""Band normalisation with the store's statistics, and the missing-value policy.

Policy for NaN/inf and nodata in input bands: such values are filled with the band's mean (0 after
normalisation), counted per modality, logged during training and reported in the run summary. They
never reach the encoder or the loss as NaN.

Degenerate bands: a band's standard deviation is floored at :func:`std_floor`, a thousandth of the
band's scale ``max(|mean|, p98 - p2, 1)`` in physical units (the percentile span only where the
statistics have it; it never decides for real data, whose std exceeds a tenth of that span, so
normalisers built from mean and std alone floor alike). A constant band (std 0, which the store keeps
as 1e-6 stored units, 1e-10 reflectance for Sentinel-2) would otherwise turn tiny differences, the
augmentations' noise and gains among them, into inputs of ~1e9; floored, they stay within a few
hundred. Bands that vary are untouched unless their std is below a thousandth of their mean (a DEM of
mean 1500 m varying by less than 1.5 m) or below 0.001 physical units (a quantity in tiny units: store
it in larger ones). Where the floor applies a warning names the modality and the band, once per process.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from eossl.errors import StoreError

STD_FLOOR = 1e-3
"""A band's std is floored at this share of its scale (see :func:`std_floor`)."""

_WARNED: set[tuple[str, str, float]] = set()  # (modality, band, std) already warned about in this process


def std_floor(mean: float, p2: float | None = None, p98: float | None = None) -> float:
    """The smallest std a band is normalised with: :data:`STD_FLOOR` x ``max(|mean|, p98 - p2, 1)``."""
    span = p98 - p2 if p2 is not None and p98 is not None and math.isfinite(p98 - p2) else 0.0
    return STD_FLOOR * max(abs(mean) if math.isfinite(mean) else 0.0, span, 1.0)


def floored_std(name: str, stats: Mapping[str, Sequence[float]], bands: Sequence[str] | None = None) -> list[float]:
    """``stats["std"]`` with each band's std floored at :func:`std_floor`; warns once per band it floors."""
    means, stds = stats["mean"], stats["std"]
    p2, p98 = stats.get("p2"), stats.get("p98")
    out = []
    for i, (mean, std) in enumerate(zip(means, stds, strict=True)):
        floor = std_floor(mean, p2[i] if p2 is not None else None, p98[i] if p98 is not None else None)
        if not std >= floor:  # also a NaN std
            band = bands[i] if bands is not None and i < len(bands) else f"#{i}"
            if (name, band, float(std)) not in _WARNED:
                _WARNED.add((name, band, float(std)))
                warnings.warn(
                    f"modality '{name}', band {band}: std {std:.3g} (mean {mean:.6g}) is degenerate (a constant "
                    f"band?); normalised with std {floor:.3g} (0.1% of the band's scale) instead",
                    UserWarning,
                    stacklevel=3,
                )
            std = floor
        out.append(float(std))
    return out


class BandNormalizer(nn.Module):
    """Per-band standardisation of each modality; tracks how many values it had to fill.

    Each band's std is floored (:func:`std_floor`, with a warning naming the band); ``bands`` (band
    names per modality) only name the bands in that warning (else they are numbered).
    """

    def __init__(
        self,
        stats: dict[str, dict[str, list[float]]],
        modalities: list[str],
        bands: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        super().__init__()
        self.modalities = list(modalities)
        for name in self.modalities:
            if name not in stats:
                raise StoreError(f"no normalisation statistics for modality '{name}' (have: {', '.join(stats)})")
            std = floored_std(name, stats[name], (bands or {}).get(name))
            self.register_buffer(f"{name}_mean", torch.tensor(stats[name]["mean"]).view(-1, 1, 1))
            self.register_buffer(f"{name}_std", torch.tensor(std).view(-1, 1, 1))
        self.filled: dict[str, int] = {name: 0 for name in self.modalities}

    def fill_invalid(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Replace non-finite values by the band mean (physical units) and count them."""
        out = dict(batch)
        for name in self.modalities:
            x = batch[name]
            bad = ~torch.isfinite(x)
            count = int(bad.sum())
            if count:
                self.filled[name] += count
                out[name] = torch.where(bad, getattr(self, f"{name}_mean").to(x.dtype).expand_as(x), x)
        return out

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = dict(batch)
        for name in self.modalities:
            out[name] = (batch[name] - getattr(self, f"{name}_mean")) / getattr(self, f"{name}_std")
        return out


def normalize_input(
    normalizer: BandNormalizer, modality: str, x: torch.Tensor, fill_missing: bool = True
) -> torch.Tensor:
    """``x`` (physical units) normalised with ``normalizer``'s statistics of ``modality``.

    Non-finite values are filled with band means first unless ``fill_missing`` is False: encoders that
    handle missing modalities themselves (``Encoder.handles_missing``, the fusion encoders of
    :mod:`eossl.models.fusion`) need the NaN that mark a missing sensor, and fill the rest themselves.
    """
    batch = {modality: x}
    if fill_missing:
        batch = normalizer.fill_invalid(batch)
    return normalizer(batch)[modality]


SHIFT_STDS = 3.0
"""A band's data mean this many of the reference's standard deviations away is differently scaled."""
SPAN_RATIO = 4.0
"""A band's 2nd-98th percentile span this many times wider or narrower than the reference's is too."""


def _hint(ratio: float, ref_low: float, data_low: float) -> str:
    if ratio > 1000 or ratio < 1e-3:
        return "DN vs reflectance?"
    if (ref_low < 0) != (data_low < 0):
        return "dB vs linear power?"
    return "another sensor, product level or offset?"


def scaling_mismatches(
    reference: dict[str, list[float]],
    data: dict[str, list[float]],
    bands: tuple[str, ...] | list[str],
    limit: int = 3,
) -> list[str]:
    """Bands whose data statistics do not look like the reference's (a checkpoint's), as messages.

    A band is flagged when its data mean lies more than :data:`SHIFT_STDS` reference standard deviations
    from the reference mean, or its 2nd-98th percentile span (the standard deviation where percentiles
    are missing) differs by more than :data:`SPAN_RATIO` times. Each message names the band and both
    ranges; the first ``limit`` flagged bands are described, the rest counted.
    """
    flagged = []
    for i, band in enumerate(bands):
        mean, std = reference["mean"][i], max(reference["std"][i], 1e-12)
        data_mean = data["mean"][i]
        if "p2" in reference and "p2" in data:
            ref_range, data_range = (reference["p2"][i], reference["p98"][i]), (data["p2"][i], data["p98"][i])
        else:
            ref_range, data_range = (mean - std, mean + std), (data_mean - data["std"][i], data_mean + data["std"][i])
        ratio = max(data_range[1] - data_range[0], 1e-12) / max(ref_range[1] - ref_range[0], 1e-12)
        if abs(data_mean - mean) > SHIFT_STDS * std or not 1 / SPAN_RATIO <= ratio <= SPAN_RATIO:
            flagged.append(
                f"band {band}: data {data_range[0]:.4g}..{data_range[1]:.4g} (mean {data_mean:.4g}), "
                f"checkpoint {ref_range[0]:.4g}..{ref_range[1]:.4g} (mean {mean:.4g}); "
                f"{_hint(ratio, ref_range[0], data_range[0])}"
            )
    if len(flagged) > limit:
        flagged = [*flagged[:limit], f"and {len(flagged) - limit} more bands"]
    return flagged


def check_scaling(
    what: str, reference: dict[str, list[float]], data: dict[str, list[float]], bands: tuple[str, ...] | list[str]
) -> str | None:
    """One loud warning (also returned) when ``data`` looks differently scaled from ``reference``."""
    problems = scaling_mismatches(reference, data, bands)
    if not problems:
        return None
    message = (
        f"{what}: the data looks differently scaled from the checkpoint's pretraining data; the checkpoint's "
        f"normalisation is used. " + "; ".join(problems)
    )
    warnings.warn(message, UserWarning, stacklevel=2)
    return message


def product_mismatches(reference: list, data: object) -> list[str]:
    """Differences in processing level, units or band names between a checkpoint's modality (the first
    of ``reference``, :class:`~eossl.data.modality.Modality` objects) and the data's, as warnings."""
    if not reference:
        return []
    ref = reference[0]
    problems = []
    for field in ("product", "units"):
        ours, theirs = getattr(ref, field, ""), getattr(data, field, "")
        if ours and theirs and ours != theirs:
            problems.append(
                f"modality '{ref.name}': the checkpoint was pretrained on {field} '{ours}', the data is '{theirs}'"
            )
    if len(reference) == 1 and tuple(ref.bands) != tuple(getattr(data, "bands", ())):
        problems.append(
            f"modality '{ref.name}': checkpoint bands {list(ref.bands)} differ from the data's {list(data.bands)}"
        )
    for message in problems:
        warnings.warn(message, UserWarning, stacklevel=2)
    return problems
