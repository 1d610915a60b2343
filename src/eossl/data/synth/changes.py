"""Real land-cover changes between two dates of a place, for change-detection targets (SeCo/OSCD style).

A share of the locations gets one change between the first acquisition and one "year" later, drawn
among the kinds its land cover allows:

- ``deforestation``: tree cover or mangroves become grassland or bare ground (one per location);
- ``built-up``: cropland, grassland or shrubland become built-up blocks cut by 1-px streets;
- ``flooding``: low land near water (or, without water in the patch, the lowest land) becomes water.

Deforestation and new built-up areas are one or two compact blobs around random pixels of the eligible
classes; floods fill the lowest land closest to water. A changed location has ~5-30% of its patch
changed; the rest of the map, and every unchanged location, stays as it was. The change mask is
exactly where the before and after classes differ. Everything is vectorised over locations and
deterministic for the generator passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.ndimage import distance_transform_edt

from eossl.data.synth import landcover as lc
from eossl.data.synth.noise import smooth_noise
from eossl.data.targets import Pair, Target

CHANGE_TYPES = ("none", "deforestation", "built-up", "flooding")
NONE, DEFORESTATION, BUILT_UP, FLOODING = range(len(CHANGE_TYPES))
CHANGE_CLASS_NAMES = ("no change", "change")
SHARE_RANGE = (0.05, 0.30)
"""Share of a changed patch that changes (uniform), at most the share of its eligible pixels."""
MIN_ELIGIBLE = 0.05
"""A change kind is possible at a location when its eligible classes cover at least this share."""
ELIGIBLE = {
    DEFORESTATION: (lc.TREE, lc.MANGROVE),
    BUILT_UP: (lc.CROP, lc.GRASS, lc.SHRUB),
    FLOODING: tuple(c for c in range(lc.NUM_CLASSES) if c not in (lc.WATER, lc.BUILT, lc.SNOW)),
}


@dataclass
class Changes:
    """The land cover one year later and what changed, per location."""

    after: lc.LandCover  # the land cover of the second date
    mask: np.ndarray  # [N, H, W] bool, pixels whose class changed
    kind: np.ndarray  # [N] int index into CHANGE_TYPES (0: no change)
    share: np.ndarray  # [N] float32 share of the patch that changed


def _random_pixel(rng: np.random.Generator, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of one random ``allowed`` pixel per map ([N, H, W] bool; any pixel where none is)."""
    n, size, _ = allowed.shape
    pick = np.where(allowed, rng.random(allowed.shape, dtype=np.float32), -1.0).reshape(n, -1).argmax(axis=1)
    return pick // size, pick % size


def _blobs(rng: np.random.Generator, allowed: np.ndarray, share: np.ndarray) -> np.ndarray:
    """[N, H, W] score: one or two Gaussian blobs around random allowed pixels, sized for ``share``."""
    n, size, _ = allowed.shape
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    two = rng.random(n) < 0.5
    radius = np.sqrt(share * size * size / np.pi / np.where(two, 2.0, 1.0)).astype(np.float32)[:, None, None]
    score = np.zeros((n, size, size), dtype=np.float32)
    for blob in range(2):
        cy, cx = _random_pixel(rng, allowed)
        d2 = (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2
        bump = np.exp(-d2 / (2 * radius**2))
        score = np.maximum(score, bump if blob == 0 else bump * two[:, None, None])
    return score + 0.15 * smooth_noise(rng, n, size, 2.0)


def _flood_score(classes: np.ndarray, relief: np.ndarray) -> np.ndarray:
    """[N, H, W] score of low land near water: low relative elevation, short distance to open water."""
    size = classes.shape[-1]
    water = classes == lc.WATER
    if water.any():  # the large spacing along the first axis keeps each map's distances its own
        distance = distance_transform_edt(~water, sampling=(100.0 * size, 1.0, 1.0))
    else:
        distance = np.full(classes.shape, float(size))
    return -relief - 0.6 * np.minimum(distance, size) / size


def _top(score: np.ndarray, allowed: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The ``count`` [N] highest-scoring allowed pixels of each map, as a mask."""
    n = len(score)
    flat = np.where(allowed, score, -np.inf).reshape(n, -1)
    ranked = -np.sort(-flat, axis=1)
    threshold = ranked[np.arange(n), np.clip(count - 1, 0, flat.shape[1] - 1)]
    return (flat >= threshold[:, None]).reshape(score.shape) & allowed & (count > 0)[:, None, None]


def _new_blocks(rng: np.random.Generator, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Street grid (1-px streets between 3-6 px blocks) and roof type per block for new built-up areas."""
    parts = []
    for _ in range(2):
        cell = rng.integers(3, 7, size=(n, 1))
        coord = np.arange(size)[None, :] + rng.integers(0, 6, size=(n, 1))
        parts.append((coord // cell, coord % cell))
    (rows, row_pos), (cols, col_pos) = parts
    street = (row_pos[:, :, None] == 0) | (col_pos[:, None, :] == 0)
    roof = ((rows[:, :, None] * 5 + cols[:, None, :] * 11) % 3).astype(np.uint8)
    return street, roof


def inject_changes(rng: np.random.Generator, cover: lc.LandCover, relief: np.ndarray, fraction: float) -> Changes:
    """Changes at about ``fraction`` of the locations of ``cover``; ``relief`` [N, H, W] is elevation in 0..1."""
    classes = cover.classes
    n, size, _ = classes.shape
    pixels = size * size
    eligible = {kind: np.isin(classes, names) for kind, names in ELIGIBLE.items()}
    eligible_share = np.stack([eligible[k].mean(axis=(1, 2)) for k in (DEFORESTATION, BUILT_UP, FLOODING)], axis=1)
    has_water = (classes == lc.WATER).any(axis=(1, 2))
    weight = np.stack([np.ones(n), np.ones(n), np.where(has_water, 1.5, 0.5)], axis=1)
    logits = np.where(eligible_share >= MIN_ELIGIBLE, np.log(weight) + rng.gumbel(size=(n, 3)), -np.inf)
    possible = np.isfinite(logits).any(axis=1)
    changed = (rng.random(n) < fraction) & possible
    kind = np.where(changed, logits.argmax(axis=1) + 1, NONE)

    share = rng.uniform(*SHARE_RANGE, n)
    allowed = np.zeros(classes.shape, dtype=bool)
    for k in (DEFORESTATION, BUILT_UP, FLOODING):
        allowed |= eligible[k] & (kind == k)[:, None, None]
    count = np.minimum(np.round(share * pixels).astype(np.int64), allowed.sum(axis=(1, 2)))
    blob_score = _blobs(rng, allowed, share)
    score = np.where((kind == FLOODING)[:, None, None], _flood_score(classes, relief), blob_score)
    mask = _top(score, allowed, np.where(changed, count, 0))

    bare_or_grass = np.where(rng.random(n) < 0.5, lc.BARE, lc.GRASS)
    new_class = np.select(
        [kind == DEFORESTATION, kind == BUILT_UP, kind == FLOODING], [bare_or_grass, lc.BUILT, lc.WATER]
    )
    after_classes = np.where(mask, new_class[:, None, None], classes).astype(np.uint8)
    street, roof = _new_blocks(rng, n, size)
    new_built = mask & (kind == BUILT_UP)[:, None, None]
    after = replace(
        cover,
        classes=after_classes,
        parcel_id=np.where(after_classes == lc.CROP, cover.parcel_id, -1).astype(np.int32),
        field_margin=cover.field_margin & (after_classes == lc.CROP),
        street=np.where(new_built, street, cover.street & (after_classes == lc.BUILT)),
        roof_type=np.where(new_built, roof, cover.roof_type).astype(np.uint8),
    )
    return Changes(after=after, mask=mask, kind=kind, share=mask.mean(axis=(1, 2)).astype(np.float32))


def change_targets() -> list[Target]:
    """The change target of the pair ``s2_change`` (see :func:`change_pairs`)."""
    return [
        Target(
            "change",
            "change",
            array="change",
            class_names=CHANGE_CLASS_NAMES,
            strata="label",
            description=(
                "pixels whose land-cover class changed between s2 and s2_after (one year later): "
                "deforestation, new built-up or flooding; kind per sample in column change_type (array change)"
            ),
        )
    ]


def change_pairs() -> list[Pair]:
    """The two dates of each place and their change target."""
    return [Pair("s2_change", before="s2", after="s2_after", target="change")]
