"""Per-band statistics of a modality, accumulated while a store is written (mean, std, 2nd/98th
percentiles of valid values, non-finite counts, constant bands), in physical units, and the samples
that hold no valid value at all."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from eossl.data.modality import Modality

CONSTANT_RELATIVE_STD = 1e-6
"""A band is constant when its std (stored units) is below this times ``max(|mean|, 1)`` (or 0)."""
EMPTY_IDS_SHOWN = 5
"""Ids of samples without any valid value kept (and named in the writer's warning)."""


class BandStatistics:
    """Per-band statistics of valid values (finite, not nodata) accumulated block by block.

    8- and 16-bit integer bands (most EO products) keep an exact histogram per band, so mean, std and
    the 2nd/98th percentiles are exact; other dtypes keep float64 sums and a bounded, seeded random
    sample of values per band for the percentiles. Non-finite values are counted. A band without any
    valid value (``valid`` 0, e.g. a hyperspectral water-vapour band that is NaN everywhere) gets finite
    placeholders: mean 0, std 1, p2 = p98 = 0, so normalising its filled values gives zeros.
    """

    SAMPLE_PER_BLOCK = 4096
    SAMPLE_LIMIT = 262144

    def __init__(self, bands: int) -> None:
        self.sum = np.zeros(bands)
        self.sumsq = np.zeros(bands)
        self.count = np.zeros(bands)
        self.nonfinite = np.zeros(bands, dtype=np.int64)
        self.samples: list[list[np.ndarray]] = [[] for _ in range(bands)]
        self.histogram: np.ndarray | None = None  # [bands, 2**bits] counts, for small integer dtypes
        self._low = 0  # the value of histogram bin 0
        self._kept = np.zeros(bands, dtype=np.int64)
        self._rng = np.random.default_rng(0)
        self.rows = 0  # samples seen
        self.empty_count = 0
        self.empty_ids: list[int] = []

    def update(self, x: np.ndarray, nodata: float | None) -> None:
        """Add a block ``[N, bands, H, W]`` of stored values (rows after those of earlier blocks)."""
        self._count_empty(x, nodata)
        flat = np.moveaxis(x, 1, 0).reshape(x.shape[1], -1)
        if np.issubdtype(flat.dtype, np.integer) and flat.dtype.itemsize <= 2:
            self._update_histogram(flat, nodata)
            return
        finite = np.isfinite(flat) if np.issubdtype(flat.dtype, np.floating) else np.ones(flat.shape, bool)
        self.nonfinite += flat.shape[1] - finite.sum(axis=1)
        valid = finite if nodata is None else finite & (flat != nodata)
        values = np.where(valid, flat, 0).astype(np.float32 if flat.dtype.itemsize <= 4 else np.float64)
        self.sum += values.sum(axis=1, dtype=np.float64)
        self.sumsq += np.einsum("ij,ij->i", values, values, dtype=np.float64)
        self.count += valid.sum(axis=1)
        for band in range(flat.shape[0]):
            if self._kept[band] < self.SAMPLE_LIMIT:
                kept = flat[band][valid[band]]
                if len(kept) > self.SAMPLE_PER_BLOCK:
                    kept = kept[self._rng.integers(0, len(kept), self.SAMPLE_PER_BLOCK)]
                self.samples[band].append(kept.astype(np.float64))
                self._kept[band] += len(kept)

    def _count_empty(self, x: np.ndarray, nodata: float | None) -> None:
        """Count the samples of block ``x`` without any valid value (all nodata or non-finite)."""
        per_sample = x.reshape(len(x), -1)
        floating = np.issubdtype(per_sample.dtype, np.floating)
        has_nodata = nodata is not None and not np.isnan(nodata)
        if per_sample.shape[1] and (floating or has_nodata):
            valid = np.isfinite(per_sample) if floating else np.ones(per_sample.shape, bool)
            if has_nodata:
                valid &= per_sample != nodata
            empty = np.flatnonzero(~valid.any(axis=1))
            self.empty_count += len(empty)
            self.empty_ids += (empty[: EMPTY_IDS_SHOWN - len(self.empty_ids)] + self.rows).tolist()
        self.rows += len(x)

    def _update_histogram(self, flat: np.ndarray, nodata: float | None) -> None:
        info = np.iinfo(flat.dtype)
        if self.histogram is None:
            self._low = int(info.min)
            self.histogram = np.zeros((flat.shape[0], int(info.max) - int(info.min) + 1), dtype=np.int64)
        shifted = flat.astype(np.int64) - self._low if self._low else flat
        for band in range(flat.shape[0]):
            self.histogram[band] += np.bincount(shifted[band], minlength=self.histogram.shape[1])
        if nodata is not None and info.min <= nodata <= info.max:
            self.histogram[:, int(nodata) - self._low] = 0

    def _from_histogram(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        values = np.arange(self.histogram.shape[1], dtype=np.float64) + self._low
        count = self.histogram.sum(axis=1)
        mean = self.histogram @ values / np.maximum(count, 1)
        var = self.histogram @ (values**2) / np.maximum(count, 1) - mean**2
        cumulative = np.cumsum(self.histogram, axis=1)
        low = np.array([values[np.searchsorted(c, 0.02 * c[-1])] if c[-1] else np.nan for c in cumulative])
        high = np.array([values[np.searchsorted(c, 0.98 * c[-1])] if c[-1] else np.nan for c in cumulative])
        return count, mean, np.sqrt(np.maximum(var, 0)), low, high

    def result(self, modality: Modality) -> dict[str, list[float]]:
        """Statistics in physical units (``(stored + offset) / scale``)."""
        if self.histogram is not None:
            count, mean, std, low, high = self._from_histogram()
        else:
            count = self.count
            mean = self.sum / np.maximum(count, 1)
            std = np.sqrt(np.maximum(self.sumsq / np.maximum(count, 1) - mean**2, 0))
            low, high = [], []
            for parts in self.samples:
                values = np.concatenate(parts) if parts else np.zeros(0)
                p2, p98 = np.percentile(values, [2, 98]) if len(values) else (np.nan, np.nan)
                low.append(float(p2))
                high.append(float(p98))

        empty = np.asarray(count) == 0  # no valid value at all (e.g. water-vapour bands): placeholders
        std_stored = np.asarray(std, dtype=np.float64)
        constant = ~empty & (std_stored < CONSTANT_RELATIVE_STD * np.maximum(np.abs(np.asarray(mean)), 1.0))

        def physical(v: np.ndarray, placeholder: float = 0.0) -> list[float]:
            values = (np.asarray(v, dtype=np.float64) + modality.offset) / modality.scale
            return np.where(empty, placeholder, values).tolist()

        return {
            "mean": physical(mean),
            "std": np.where(empty, 1.0, np.maximum(std, 1e-6) / modality.scale).tolist(),
            "p2": physical(low),
            "p98": physical(high),
            "valid": np.asarray(count).astype(np.int64).tolist(),
            "nonfinite": self.nonfinite.tolist(),
            "constant": constant.tolist(),
        }


def degenerate_data_warnings(
    store: str,
    modalities: Mapping[str, Modality],
    accumulated: Mapping[str, BandStatistics],
    results: Mapping[str, dict[str, list]],
) -> list[str]:
    """Messages for a store's constant bands and its samples without any valid value, per modality.

    ``accumulated`` are the :class:`BandStatistics` of each continuous modality, ``results`` their
    :meth:`~BandStatistics.result`.
    """
    messages = []
    for name, stats in accumulated.items():
        modality, result = modalities[name], results[name]
        constant = [i for i, flag in enumerate(result.get("constant", [])) if flag]
        if constant:
            bands = ", ".join(f"{modality.bands[i]} (value {result['mean'][i]:.6g})" for i in constant)
            messages.append(
                f"store '{store}': modality '{name}' has {len(constant)} constant band(s) (std ~0 over every valid "
                f"pixel): {bands}; they carry no information (check the import: a band filled with zeros or a "
                "constant?); normalisation floors their std"
            )
        if stats.empty_count:
            ids = ", ".join(map(str, stats.empty_ids))
            more = ", ..." if stats.empty_count > len(stats.empty_ids) else ""
            nodata = "" if modality.nodata is None else f" (nodata {modality.nodata:g})"
            messages.append(
                f"store '{store}': {stats.empty_count} of {stats.rows} samples hold no valid value of modality "
                f"'{name}' (every pixel of every band nodata{nodata} or non-finite); sample ids {ids}{more}"
            )
    return messages
