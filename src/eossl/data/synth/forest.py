"""Forest targets of the synthetic Earth: a binary tree mask and the tree cover density around each pixel.

The forest use case of EO foundation models ("binary tree masks, tree density"): ``forest`` is 1 where
the land cover is tree cover or mangroves, ``tree_density`` the share of tree-covered 10 m pixels in a
5 x 5 window (about 50 m, like the Copernicus HRL Tree Cover Density). Both derive from the static
land-cover map alone (no random draws), so they are exact, cheap and identical in every season.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter

from eossl.data.synth import landcover as lc
from eossl.data.targets import Target

TREE_CLASSES = (lc.TREE, lc.MANGROVE)
"""Land-cover classes that count as tree cover."""
DENSITY_WINDOW = 5
"""Side of the tree-density window in 10 m pixels (5 x 5 = 50 m x 50 m)."""
FOREST_CLASS_NAMES = ("non-forest", "forest")


def forest_mask(classes: np.ndarray) -> np.ndarray:
    """``uint8`` mask (same shape as ``classes``): 1 on tree cover or mangroves, 0 elsewhere."""
    return np.isin(classes, TREE_CLASSES).astype(np.uint8)


def tree_density(mask: np.ndarray, window: int = DENSITY_WINDOW) -> np.ndarray:
    """Share of tree pixels in the ``window x window`` neighbourhood of each pixel of ``mask`` [N, H, W].

    Borders use reflect padding (``scipy.ndimage``'s ``reflect``: the edge pixels mirrored, as
    ``numpy.pad(mode="symmetric")``). Values are exact multiples of ``1 / window**2`` in [0, 1].
    """
    mean = uniform_filter(mask.astype(np.float32), size=(1, window, window), mode="reflect")
    cells = float(window * window)
    return (np.round(mean * cells) / cells).astype(np.float32)


def forest_arrays(classes: np.ndarray) -> dict[str, np.ndarray]:
    """``forest`` [N, 1, H, W] uint8 and ``tree_density`` [N, 1, H, W] float32 from land-cover maps [N, H, W]."""
    mask = forest_mask(classes)
    return {"forest": mask[:, None], "tree_density": tree_density(mask)[:, None]}


def forest_extra_arrays(size: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """The store's extra-array declarations (per-sample shape and dtype) of the forest targets."""
    return {"forest": ((1, size, size), "uint8"), "tree_density": ((1, size, size), "float32")}


def forest_targets() -> list[Target]:
    """The forest targets: ``forest`` (segmentation) and ``tree_density`` (pixel-regression)."""
    return [
        Target(
            "forest",
            "segmentation",
            array="forest",
            class_names=FOREST_CLASS_NAMES,
            strata="label",
            description="binary tree mask: 1 = tree cover or mangroves pixel (array forest)",
        ),
        Target(
            "tree_density",
            "pixel-regression",
            array="tree_density",
            strata="label",
            description=(
                f"tree cover density: share of tree/mangrove 10 m pixels in a {DENSITY_WINDOW}x{DENSITY_WINDOW} "
                "window (~50 m, like the Copernicus HRL Tree Cover Density), reflect padding at the borders "
                "(array tree_density, 0..1)"
            ),
        ),
    ]
