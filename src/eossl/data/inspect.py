"""``eossl data show``: a text summary of a store and a PNG grid of samples.

Everything listed comes from the store's declarations (modalities, targets, dates, pairs), so the
summary works for any store, not only synthetic ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eossl.data.plotting import save_sample_grid
from eossl.data.splits import official_splits, split_by_location
from eossl.data.store import SampleStore

SHOW_SPLIT = {"val": 0.1, "test": 0.2, "seed": 0}
"""The split whose sizes ``data show`` reports (the data module's defaults)."""


def _gsd(values: tuple[float, ...]) -> str:
    unique = sorted(set(values))
    return f"{unique[0]:g} m" if len(unique) == 1 else f"{unique[0]:g}-{unique[-1]:g} m"


def describe_declarations(store: SampleStore) -> list[str]:
    """Lines listing the store's modalities, targets, dates, pairs and split sizes."""
    lines = ["  modalities:"]
    for name, m in store.modalities.items():
        bands = ", ".join(m.bands) if m.num_bands <= 4 else f"{m.bands[0]} .. {m.bands[-1]}"
        units = f", {m.units}" if m.units else ""
        count = f"{m.num_bands} band{'s' if m.num_bands != 1 else ''}"
        lines.append(f"    {name:<10} {m.kind:<11} {count} ({bands}){units}, GSD {_gsd(m.gsd_m)}")
    lines.append("  targets:" if store.targets else "  targets: none declared")
    for name, t in store.targets.items():
        source = t.source
        if t.array is not None and t.array in store.arrays:
            source += f" {list(store.array(t.array).shape[1:])}"
        classes = f", {t.num_classes} classes" if t.classification else ""
        strata = f", strata {t.strata}" if t.strata else ""
        ignore = f", ignore {t.ignore_index}" if t.ignore_index is not None else ""
        lines.append(f"    {name:<10} {t.kind:<16} {source}{classes}{strata}{ignore}")
    table = store.table
    dates = store.dates
    if dates is None:
        place = "places from column location_id" if "location_id" in table else "every row is its own place"
        lines.append(f"  dates: none declared ({place})")
    elif dates.group not in table:
        lines.append(f"  dates: group column '{dates.group}' is missing from the metadata table")
    else:
        scenes = table[dates.group].value_counts()
        time = f", time column {dates.time}" if dates.time else ""
        if dates.time and dates.time in table:
            time += f" ({table[dates.time].nunique()} values)"
        lines.append(
            f"  dates: group column {dates.group}, {len(scenes)} places, scenes per place "
            f"min {scenes.min()} max {scenes.max()}{time}"
        )
    if store.pairs:
        lines.append("  pairs:")
        lines += [f"    {p.name}: {p.before} -> {p.after}, change target {p.target}" for p in store.pairs.values()]
    else:
        lines.append("  pairs: none declared")
    group = dates.group if dates is not None and dates.group in table else None
    if store.split is not None:
        splits = official_splits(table, store.split, SHOW_SPLIT["val"], SHOW_SPLIT["seed"], group=group)
        how = f"official, column {store.split}"
    else:
        splits = split_by_location(table, SHOW_SPLIT["val"], SHOW_SPLIT["test"], SHOW_SPLIT["seed"], group=group)
        how = f"by place: val {SHOW_SPLIT['val']}, test {SHOW_SPLIT['test']}, seed {SHOW_SPLIT['seed']}"
    sizes = ", ".join(f"{name} {len(splits[name])}" for name in ("train", "val", "test"))
    lines.append(f"  splits ({how}): {sizes}")
    return lines


def show_store(path: str | Path, out: str | Path | None = None, count: int = 8, seed: int = 0) -> str:
    """Return the store's summary (arrays, statistics, declarations, label counts) and write the sample grid PNG."""
    store = SampleStore(path)
    lines = [store.summary(), *describe_declarations(store)]
    table = store.table
    single = store.targets_of_kind("single-label")
    label = single[0] if single and single[0].column in table else None
    for target in single:
        if target.column in table:
            names = target.class_names
            counts = table[target.column].value_counts().sort_index()
            lines.append(
                f"  majority-class counts of {target.name}: "
                + ", ".join(f"{names[i] if 0 <= i < len(names) else i}={n}" for i, n in counts.items())
            )
    for column in ("season", "climate_zone"):
        if column in table:
            lines.append(f"  {column}: " + ", ".join(f"{k}={v}" for k, v in table[column].value_counts().items()))
    if "cloud_fraction" in table:
        lines.append(f"  cloudy scenes: {(table['cloud_fraction'] > 0).mean():.1%}")
    picks = np.sort(np.random.default_rng(seed).choice(len(store), size=min(count, len(store)), replace=False))
    image_arrays = [n for n in ("s2", "s1", "dem", "lulc") if n in store.arrays]
    if not image_arrays:
        lines.append(f"  no picture: samples.png shows s2, s1, dem and lulc; this store holds {sorted(store.arrays)}")
        return "\n".join(lines)
    rows = {name: store.read(name, picks) for name in image_arrays}
    samples = [{name: rows[name][i] for name in image_arrays} for i in range(len(picks))]
    captions = []
    for i in picks:
        row = table.iloc[i]
        text = ""
        if label is not None:
            value = int(row[label.column])
            text = label.class_names[value] if 0 <= value < label.num_classes else str(value)
        captions.append(f"#{i} {text}\n{row.get('season', '')} {row.get('climate_zone', '')}")
    s2_bands = store.modalities["s2"].bands if "s2" in store.modalities else ()
    png = Path(out) if out else Path(path) / "samples.png"
    save_sample_grid(samples, captions, s2_bands, png, store.class_names)
    lines.append(f"wrote {png}")
    return "\n".join(lines)
