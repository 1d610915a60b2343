"""The classic hyperspectral scenes (Indian Pines, Pavia University, Salinas, KSC): file and variable
names, class names, sensor and approximate band centres (see :mod:`eossl.data.importers.hyperspectral_mat`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _drop(values: np.ndarray, removed_1based: list[range]) -> tuple[float, ...]:
    keep = np.ones(len(values), bool)
    for bands in removed_1based:
        keep[[b - 1 for b in bands]] = False
    return tuple(round(float(w), 1) for w in values[keep])


@dataclass(frozen=True)
class Scene:
    """One scene: its files and keys, classes, sensor and approximate centre wavelengths."""

    name: str
    cube_file: str
    cube_key: str
    gt_file: str
    gt_key: str
    classes: tuple[str, ...]
    sensor: str
    gsd_m: float
    bands: int
    wavelengths_nm: tuple[float, ...] | None


SCENES: dict[str, Scene] = {
    "indian-pines": Scene(
        "indian-pines", "Indian_pines_corrected.mat", "indian_pines_corrected", "Indian_pines_gt.mat",
        "indian_pines_gt",
        ("Alfalfa", "Corn-notill", "Corn-mintill", "Corn", "Grass-pasture", "Grass-trees", "Grass-pasture-mowed",
         "Hay-windrowed", "Oats", "Soybean-notill", "Soybean-mintill", "Soybean-clean", "Wheat", "Woods",
         "Buildings-Grass-Trees-Drives", "Stone-Steel-Towers"),
        "AVIRIS", 20.0, 200, _drop(np.linspace(400, 2500, 220), [range(104, 109), range(150, 164), range(220, 221)]),
    ),
    "pavia-u": Scene(
        "pavia-u", "PaviaU.mat", "paviaU", "PaviaU_gt.mat", "paviaU_gt",
        ("Asphalt", "Meadows", "Gravel", "Trees", "Painted metal sheets", "Bare Soil", "Bitumen",
         "Self-Blocking Bricks", "Shadows"),
        "ROSIS", 1.3, 103, _drop(np.linspace(430, 860, 103), []),
    ),
    "salinas": Scene(
        "salinas", "Salinas_corrected.mat", "salinas_corrected", "Salinas_gt.mat", "salinas_gt",
        ("Brocoli_green_weeds_1", "Brocoli_green_weeds_2", "Fallow", "Fallow_rough_plow", "Fallow_smooth",
         "Stubble", "Celery", "Grapes_untrained", "Soil_vinyard_develop", "Corn_senesced_green_weeds",
         "Lettuce_romaine_4wk", "Lettuce_romaine_5wk", "Lettuce_romaine_6wk", "Lettuce_romaine_7wk",
         "Vinyard_untrained", "Vinyard_vertical_trellis"),
        "AVIRIS", 3.7, 204, _drop(np.linspace(400, 2500, 224), [range(108, 113), range(154, 168), range(224, 225)]),
    ),
    "ksc": Scene(
        "ksc", "KSC.mat", "KSC", "KSC_gt.mat", "KSC_gt",
        ("Scrub", "Willow swamp", "Cabbage palm hammock", "Cabbage palm/oak hammock", "Slash pine",
         "Oak/broadleaf hammock", "Hardwood swamp", "Graminoid marsh", "Spartina marsh", "Cattail marsh",
         "Salt marsh", "Mud flats", "Water"),
        "AVIRIS", 18.0, 176, None,
    ),
}  # fmt: skip
