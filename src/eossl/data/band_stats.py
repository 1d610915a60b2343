"""Per-band statistics of a modality, accumulated while a store is written (mean, std, 2nd/98th
percentiles of valid values, non-finite counts), in physical units."""

from __future__ import annotations

import numpy as np

from eossl.data.modality import Modality


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

    def update(self, x: np.ndarray, nodata: float | None) -> None:
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
        }
