"""``eossl data show``: a text summary of a store and a PNG grid of samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eossl.data.plotting import save_sample_grid
from eossl.data.store import SampleStore


def show_store(path: str | Path, out: str | Path | None = None, count: int = 8, seed: int = 0) -> str:
    """Return the store's summary (arrays, statistics, label counts) and write the sample grid PNG."""
    store = SampleStore(path)
    lines = [store.summary()]
    table = store.table
    names = store.class_names
    if "label" in table:
        counts = table["label"].value_counts().sort_index()
        lines.append(
            "  majority-class counts: "
            + ", ".join(f"{names[i] if i < len(names) else i}={n}" for i, n in counts.items())
        )
    for column in ("season", "climate_zone"):
        if column in table:
            lines.append(f"  {column}: " + ", ".join(f"{k}={v}" for k, v in table[column].value_counts().items()))
    if "cloud_fraction" in table:
        lines.append(f"  cloudy scenes: {(table['cloud_fraction'] > 0).mean():.1%}")
    picks = np.sort(np.random.default_rng(seed).choice(len(store), size=min(count, len(store)), replace=False))
    image_arrays = [n for n in ("s2", "s1", "dem", "lulc") if n in store.arrays]
    rows = {name: store.read(name, picks) for name in image_arrays}
    samples = [{name: rows[name][i] for name in image_arrays} for i in range(len(picks))]
    captions = []
    for i in picks:
        row = table.iloc[i]
        label = names[int(row["label"])] if "label" in table and names else ""
        captions.append(f"#{i} {label}\n{row.get('season', '')} {row.get('climate_zone', '')}")
    s2_bands = store.modalities["s2"].bands if "s2" in store.modalities else ()
    png = Path(out) if out else Path(path) / "samples.png"
    save_sample_grid(samples, captions, s2_bands, png, names)
    lines.append(f"wrote {png}")
    return "\n".join(lines)
