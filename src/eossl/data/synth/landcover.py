"""Land-cover maps with ESA WorldCover-like classes, drawn from location-dependent priors.

Spatial structure differs by class: smooth blobs for forest and water, rectangular parcels for
cropland, blocks cut by streets and straight roads for built-up areas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eossl.data.synth.noise import smooth_noise

CLASS_NAMES = (
    "tree_cover",
    "shrubland",
    "grassland",
    "cropland",
    "built_up",
    "bare_sparse",
    "snow_ice",
    "water",
    "wetland",
    "mangroves",
    "moss_lichen",
)
WORLDCOVER_CODES = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100)
TREE, SHRUB, GRASS, CROP, BUILT, BARE, SNOW, WATER, WETLAND, MANGROVE, MOSS = range(len(CLASS_NAMES))
NUM_CLASSES = len(CLASS_NAMES)

CLIMATE_ZONES = ("tropical", "arid", "temperate", "boreal", "polar")
TROPICAL, ARID, TEMPERATE, BOREAL, POLAR = range(len(CLIMATE_ZONES))

# Prior area share of each class (columns as CLASS_NAMES) per climate zone (rows as CLIMATE_ZONES).
CLASS_PRIOR = np.array(
    [
        [0.30, 0.07, 0.09, 0.15, 0.08, 0.03, 0.00, 0.08, 0.06, 0.06, 0.00],
        [0.02, 0.24, 0.12, 0.11, 0.09, 0.30, 0.00, 0.04, 0.02, 0.01, 0.03],
        [0.24, 0.06, 0.17, 0.24, 0.11, 0.03, 0.01, 0.07, 0.05, 0.00, 0.02],
        [0.36, 0.10, 0.10, 0.07, 0.05, 0.05, 0.03, 0.11, 0.08, 0.00, 0.05],
        [0.02, 0.09, 0.08, 0.00, 0.01, 0.28, 0.28, 0.08, 0.06, 0.00, 0.10],
    ],
    dtype=np.float64,
)
# Smoothness of each class's region field (pixels): forests and water form large blobs.
CLASS_SMOOTHNESS = np.array([5.0, 2.5, 4.0, 5.0, 3.0, 4.0, 5.0, 6.0, 2.0, 4.0, 3.0], dtype=np.float32)
MAX_CLASSES_PER_PATCH = 4


@dataclass
class LandCover:
    """Static land cover of a batch of locations, plus the sub-structure the renderers need."""

    classes: np.ndarray  # [N, H, W] uint8 class index
    parcel_id: np.ndarray  # [N, H, W] int32 parcel index (cropland structure), -1 elsewhere
    field_margin: np.ndarray  # [N, H, W] bool, 1-px margins between parcels
    street: np.ndarray  # [N, H, W] bool, streets and roads inside built-up areas
    roof_type: np.ndarray  # [N, H, W] uint8 roof material per building block


def climate_zone(lat: np.ndarray, lon: np.ndarray, elevation: np.ndarray) -> np.ndarray:
    """Köppen-like zone from latitude, a smooth aridity belt and altitude (6 deg of latitude per km)."""
    aridity = 0.5 + 0.5 * np.sin(np.radians(lon) * 2.0 + 1.3) * np.cos(np.radians(lat) * 3.0)
    effective_lat = np.abs(lat) + 6.0 * elevation / 1000.0
    zone = np.full(lat.shape, TEMPERATE, dtype=np.int64)
    zone[effective_lat < 23] = TROPICAL
    zone[(effective_lat >= 55) & (effective_lat < 66)] = BOREAL
    zone[effective_lat >= 66] = POLAR
    dry_belt = (np.abs(lat) >= 12) & (np.abs(lat) < 40) & (aridity > 0.55)
    zone[dry_belt & (effective_lat < 50)] = ARID
    return zone


def class_prior(zone: np.ndarray, elevation: np.ndarray) -> np.ndarray:
    """[N, K] class probabilities for each location; high mountains favour snow, rock and moss."""
    prior = CLASS_PRIOR[zone].copy()
    alpine = np.clip((elevation - 2000.0) / 1500.0, 0.0, 1.0)[:, None]
    boost = np.ones(NUM_CLASSES)
    boost[[SNOW, BARE, MOSS]] = 4.0
    damp = np.ones(NUM_CLASSES)
    damp[[CROP, BUILT, MANGROVE, WETLAND]] = 0.1
    prior = prior * (1 + alpine * (boost - 1)) * (1 + alpine * (damp - 1))
    return prior / prior.sum(axis=1, keepdims=True)


def _grid_cells(rng: np.random.Generator, n: int, size: int, low: int, high: int):
    """Per-patch axis-aligned grid: cell index and within-cell position along one axis, [N, size]."""
    cell = rng.integers(low, high + 1, size=(n, 1))
    offset = rng.integers(0, high, size=(n, 1))
    coord = np.arange(size)[None, :] + offset
    return coord // cell, coord % cell, cell


def sample_landcover(rng: np.random.Generator, prior: np.ndarray, size: int) -> LandCover:
    """Draw one land-cover map per row of ``prior`` ([N, K] class probabilities)."""
    n = prior.shape[0]
    slots = MAX_CLASSES_PER_PATCH
    # Which classes are present: Gumbel top-k sampling without replacement from the prior.
    gumbel = rng.gumbel(size=prior.shape)
    slot_class = np.argsort(-(np.log(prior + 1e-12) + gumbel), axis=1)[:, :slots]
    present = np.arange(slots)[None, :] < rng.choice([1, 2, 3, 4], p=[0.15, 0.35, 0.3, 0.2], size=(n, 1))
    area = rng.dirichlet(np.full(slots, 1.5), size=n)
    fields = smooth_noise(rng, n * slots, size, CLASS_SMOOTHNESS[slot_class].reshape(-1))
    logits = np.log(area)[:, :, None, None] + 1.6 * fields.reshape(n, slots, size, size)
    logits[~present] = -np.inf
    slot = logits.argmax(axis=1)
    classes = np.take_along_axis(slot_class, slot.reshape(n, -1), axis=1).reshape(n, size, size)

    # Cropland snaps to rectangular parcels: a parcel is cropland when its centre is.
    rows, row_pos, row_cell = _grid_cells(rng, n, size, 5, 11)
    cols, col_pos, col_cell = _grid_cells(rng, n, size, 5, 11)
    centre_y = np.clip(np.arange(size)[None] - row_pos + row_cell // 2, 0, size - 1)
    centre_x = np.clip(np.arange(size)[None] - col_pos + col_cell // 2, 0, size - 1)
    idx = np.arange(n)[:, None, None]
    centre_is_crop = classes[idx, centre_y[:, :, None], centre_x[:, None, :]] == CROP
    non_crop_logits = np.where((slot_class == CROP)[:, :, None, None], -np.inf, logits)
    non_crop_class = np.take_along_axis(slot_class, non_crop_logits.argmax(axis=1).reshape(n, -1), axis=1).reshape(
        n, size, size
    )
    only_crop = ~np.isfinite(non_crop_logits.max(axis=1))
    non_crop_class = np.where(only_crop, CROP, non_crop_class)
    classes = np.where(centre_is_crop, CROP, np.where(classes == CROP, non_crop_class, classes))
    parcel_id = rows[:, :, None] * 64 + cols[:, None, :]
    field_margin = (row_pos[:, :, None] == 0) | (col_pos[:, None, :] == 0)

    # Built-up: building blocks separated by 1-px streets, plus straight roads through the patch.
    brows, brow_pos, _ = _grid_cells(rng, n, size, 3, 6)
    bcols, bcol_pos, _ = _grid_cells(rng, n, size, 3, 6)
    street = (brow_pos[:, :, None] == 0) | (bcol_pos[:, None, :] == 0)
    road_prob = np.clip(prior[:, BUILT] * 4.0 + prior[:, CROP], 0.05, 0.8)
    has_road = rng.random(n) < road_prob
    angle = rng.uniform(0, np.pi, n)[:, None, None]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    through = rng.uniform(0.2 * size, 0.8 * size, (n, 2))
    distance = np.abs(
        (xx[None] - through[:, 0, None, None]) * np.sin(angle) - (yy[None] - through[:, 1, None, None]) * np.cos(angle)
    )
    road = has_road[:, None, None] & (distance < 0.75) & (classes != WATER)
    classes = np.where(road, BUILT, classes)
    street = (street & (classes == BUILT)) | road
    roof_type = ((brows[:, :, None] * 7 + bcols[:, None, :] * 13) % 3).astype(np.uint8)
    parcel_id = np.where(classes == CROP, parcel_id, -1).astype(np.int32)
    return LandCover(
        classes=classes.astype(np.uint8),
        parcel_id=parcel_id,
        field_margin=field_margin & (classes == CROP),
        street=street,
        roof_type=roof_type,
    )
