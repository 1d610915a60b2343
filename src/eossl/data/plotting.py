"""Pictures of samples: RGB, false colour, SAR, DEM and land-cover map side by side."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

from eossl.io import atomic_path

# ESA WorldCover legend colours, in the order of eossl.data.synth.landcover.CLASS_NAMES.
WORLDCOVER_COLOURS = (
    "#006400",
    "#ffbb22",
    "#ffff4c",
    "#f096ff",
    "#fa0000",
    "#b4b4b4",
    "#f0f0f0",
    "#0064c8",
    "#0096a0",
    "#00cf75",
    "#fae6a0",
)


def stretch(image: np.ndarray) -> np.ndarray:
    """Linear 2-98 percentile stretch to [0, 1]."""
    lo, hi = np.percentile(image, [2, 98])
    return np.clip((image - lo) / (hi - lo + 1e-6), 0, 1)


def sample_panels(sample: dict[str, np.ndarray], s2_bands: tuple[str, ...]) -> list[tuple[str, np.ndarray, dict]]:
    """The panels worth showing for one sample: (title, image, imshow kwargs)."""
    panels = []
    if "s2" in sample:
        s2 = sample["s2"].astype(np.float32) / 10000.0
        band = {name: i for i, name in enumerate(s2_bands)}
        rgb = np.clip(s2[[band["B4"], band["B3"], band["B2"]]].transpose(1, 2, 0) * 3.5, 0, 1)
        false_colour = np.clip(s2[[band["B8"], band["B4"], band["B3"]]].transpose(1, 2, 0) * 2.5, 0, 1)
        panels += [("S2 RGB", rgb, {}), ("S2 NIR-R-G", false_colour, {})]
    if "s1" in sample:
        panels.append(("S1 VV (dB)", stretch(sample["s1"][0]), {"cmap": "gray"}))
    if "dem" in sample:
        panels.append(("DEM (m)", sample["dem"][0], {"cmap": "terrain"}))
    if "lulc" in sample:
        cmap = ListedColormap(WORLDCOVER_COLOURS)
        panels.append(
            (
                "land cover",
                sample["lulc"][0],
                {"cmap": cmap, "vmin": -0.5, "vmax": len(WORLDCOVER_COLOURS) - 0.5, "interpolation": "nearest"},
            )
        )
    return panels


def save_sample_grid(
    samples: list[dict[str, np.ndarray]],
    captions: list[str],
    s2_bands: tuple[str, ...],
    path: Path,
    class_names: tuple[str, ...] = (),
) -> Path:
    """Write a PNG with one row per sample and one column per panel (atomically)."""
    rows = [sample_panels(s, s2_bands) for s in samples]
    cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.1 * cols, 2.1 * len(rows)), squeeze=False)
    for r, (panels, caption) in enumerate(zip(rows, captions, strict=True)):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(panels):
                title, image, kwargs = panels[c]
                ax.imshow(image, **kwargs)
                if r == 0:
                    ax.set_title(title, fontsize=9)
        axes[r, 0].set_ylabel(caption, fontsize=7)
    if class_names:
        handles = [
            matplotlib.patches.Patch(color=WORLDCOVER_COLOURS[i], label=name)
            for i, name in enumerate(class_names[: len(WORLDCOVER_COLOURS)])
        ]
        fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=7, frameon=False)
        fig.subplots_adjust(bottom=0.06 + 0.25 / len(rows))
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
