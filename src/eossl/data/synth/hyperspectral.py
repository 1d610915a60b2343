"""EnMAP-like hyperspectral rendering: continuous class spectra, mixed per pixel, 30 m, water-vapour gaps.

Each class has a smooth analytic spectrum with the features that matter (:func:`shape_library`):
vegetation's chlorophyll absorption, red edge at ~700-750 nm, NIR plateau and the leaf-water features
at 970, 1200, 1450 and 1940 nm; soils rising towards the SWIR with clay/hydroxyl features; water low and
falling; built-up surfaces flat-ish; snow bright in the visible and dark in the SWIR; clouds bright and
flat. Each shape is calibrated to the Sentinel-2 renderer's palette (:mod:`eossl.data.synth.sentinel2`)
at the S2 band centres, so both sensors see the same surfaces.

A scene is a linear mixture of endmembers per pixel: the class spectra at the scene's phenology (crops
and grassland at the greenness their S2 pixel shows), the mineral surfaces of built-up and bare ground,
seasonal snow, path radiance (haze) and clouds (the S2 scene's cloud mask), shaded by the same
illumination and terrain. Sensor noise is added and a 3 x 3 mean emulates EnMAP's 30 m GSD on the 10 m
grid, so the cube stays co-registered with ``s2``. Bands in the water-vapour absorptions (about
1340-1455 nm and 1790-1960 nm) are NaN in every pixel, as in L2A products.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.ndimage import uniform_filter
from scipy.special import ndtri

from eossl.data.modality import S2_WAVELENGTHS, Modality
from eossl.data.sensors import ENMAP_NOMINAL_NM
from eossl.data.synth import landcover as lc
from eossl.data.synth.noise import smooth_noise
from eossl.data.synth.sentinel2 import (
    CLOUD,
    DRY,
    EVERGREEN_TREES,
    GREEN,
    GREENNESS,
    MINERALS,
    SNOW_COVER,
    TEXTURE,
    local_season,
)

WATER_VAPOUR_NM = ((1340.0, 1455.0), (1790.0, 1960.0))
"""Atmospheric water-vapour absorptions whose bands L2A products leave without valid values."""
SPATIAL_WINDOW = 3
"""EnMAP's 30 m pixels emulated by a 3 x 3 mean on the 10 m grid."""
NOISE_STD = 0.005
_B4, _B8 = 3, 7  # S2 red and NIR band indices


def enmap_wavelengths(bands: int) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """Band names and centres (nm) of a ``bands``-band cube from ~420 to ~2450 nm.

    Up to 224 bands: DLR's nominal EnMAP centres (:data:`eossl.data.sensors.ENMAP_NOMINAL_NM`, product
    order, VNIR then SWIR) subsampled evenly, each named by its EnMAP band number; more: evenly spaced.
    """
    if bands < 1:
        raise ValueError(f"hyperspectral bands must be >= 1, got {bands}")
    nominal = len(ENMAP_NOMINAL_NM)
    if bands <= nominal:
        index = np.round(np.linspace(0, nominal - 1, bands)).astype(int)
        return tuple(f"B{i + 1:03d}" for i in index), tuple(float(ENMAP_NOMINAL_NM[i]) for i in index)
    return tuple(f"B{i + 1:03d}" for i in range(bands)), tuple(np.linspace(420.0, 2450.0, bands).round(1).tolist())


def water_vapour_bands(wavelengths: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """Boolean per band: inside a water-vapour absorption (no valid values in L2A products)."""
    wl = np.asarray(wavelengths, dtype=np.float64)
    return np.any([(wl >= low) & (wl <= high) for low, high in WATER_VAPOUR_NM], axis=0)


def enmap_modality(bands: int) -> Modality:
    """The ``enmap`` modality of a ``bands``-band synthetic cube (reflectance, NaN = no data, 30 m)."""
    names, wavelengths = enmap_wavelengths(bands)
    return Modality(
        name="enmap",
        kind="optical",
        bands=names,
        dtype="float32",
        gsd_m=(30.0,) * bands,
        wavelengths_nm=wavelengths,
        nodata=float("nan"),
        units="reflectance",
        product="L2A-synthetic",
    )


def _g(wl: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((wl - centre) / width) ** 2)


def _s(wl: np.ndarray, centre: float, width: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(wl - centre) / width))


def shape_library(wl: np.ndarray) -> dict[str, np.ndarray]:
    """Analytic reflectance shapes [B] at wavelengths ``wl`` (nm), before calibration to the S2 palette."""
    vis = 0.035 + 0.05 * _g(wl, 555, 35) - 0.015 * _g(wl, 670, 25) - 0.01 * _g(wl, 450, 30)
    leaf_water = (
        0.04 * _g(wl, 975, 30) + 0.08 * _g(wl, 1200, 45) + 0.9 * _g(wl, 1450, 70) + 1.6 * _g(wl, 1940, 90)
        + 0.55 * _s(wl, 1400, 40) + 0.75 * _s(wl, 2000, 60) + 0.6 * _s(wl, 2400, 40)
    )  # fmt: skip
    vegetation = (vis + (0.45 - vis) * _s(wl, 718, 14)) * np.exp(-leaf_water)
    dry_vegetation = (0.05 + 0.15 * _s(wl, 600, 60) + 0.1 * _s(wl, 718, 20) + 0.05 * _s(wl, 1100, 200)) * np.exp(
        -(0.25 * _g(wl, 1450, 60) + 0.4 * _g(wl, 1940, 80) + 0.3 * _g(wl, 2100, 40) + 0.3 * _s(wl, 2300, 80))
    )
    soil = (0.08 + 0.27 * _s(wl, 650, 180) - 0.02 * _g(wl, 900, 80)) * np.exp(
        -(0.08 * _g(wl, 1410, 30) + 0.12 * _g(wl, 1910, 35) + 0.15 * _g(wl, 2200, 25) + 0.2 * _s(wl, 2250, 60))
    )
    mineral = 0.2 * (0.6 + 0.4 * _s(wl, 650, 150)) * np.exp(-(0.1 * _g(wl, 2200, 30) + 0.08 * _g(wl, 2340, 30)))
    water = 0.005 + 0.055 / (1.0 + np.exp((wl - 620) / 50))
    snow = 0.95 * np.exp(
        -(0.25 * _s(wl, 950, 100) + 0.3 * _g(wl, 1030, 40) + 0.5 * _g(wl, 1260, 60) + 1.2 * _s(wl, 1400, 40)
          + 1.6 * _g(wl, 1500, 70) + 1.6 * _g(wl, 2000, 90) + 0.6 * _s(wl, 2300, 60))
    )  # fmt: skip
    cloud = 1.0 - 0.3 * _s(wl, 1500, 300)
    return {
        "vegetation": vegetation,
        "dry_vegetation": dry_vegetation,
        "soil": soil,
        "mineral": mineral,
        "water": water,
        "snow": snow,
        "cloud": cloud,
    }


VEGETATION = (lc.TREE, lc.SHRUB, lc.GRASS, lc.CROP, lc.WETLAND, lc.MANGROVE, lc.MOSS)
GREEN_SHAPE = {**{c: "vegetation" for c in VEGETATION}, lc.BUILT: "mineral", lc.BARE: "soil", lc.SNOW: "snow"}
GREEN_SHAPE[lc.WATER] = "water"
DRY_SHAPE = {**GREEN_SHAPE, **{c: "dry_vegetation" for c in (lc.TREE, lc.SHRUB, lc.WETLAND, lc.MOSS)}}
DRY_SHAPE.update({lc.GRASS: "soil", lc.CROP: "soil"})
K = lc.NUM_CLASSES
# Endmember slots: class spectra green (0..K-1) and dry (K..2K-1), minerals, snow, path radiance, cloud.
MINERAL0, SNOW_SLOT = 2 * K, 2 * K + len(MINERALS)
PATH_SLOT, CLOUD_SLOT = SNOW_SLOT + 1, SNOW_SLOT + 2
SLOTS = CLOUD_SLOT + 1


def _calibrated(shape: np.ndarray, palette: np.ndarray, wl: np.ndarray) -> np.ndarray:
    """``shape`` [B] scaled by a smooth ratio that makes it equal ``palette`` [..., 12] at the S2 centres."""
    s2 = np.asarray(S2_WAVELENGTHS)
    at_s2 = np.interp(s2, wl[np.argsort(wl)], shape[np.argsort(wl)]) if len(wl) > 1 else np.full(12, shape[0])
    weights = np.stack([np.interp(wl, s2, np.eye(len(s2))[i]) for i in range(len(s2))])  # [12, B]
    return shape * np.exp(np.log(np.maximum(palette, 1e-4) / np.maximum(at_s2, 1e-4)) @ weights)


@lru_cache(maxsize=4)
def endmember_library(wavelengths: tuple[float, ...]) -> np.ndarray:
    """[SLOTS, B] endmember spectra: green and dry class spectra, minerals, snow, a unit path, cloud.

    Computed once per band set (the result is shared: do not modify it)."""
    wl = np.asarray(wavelengths, dtype=np.float64)
    shapes = shape_library(wl)
    lib = np.zeros((SLOTS, len(wl)))
    for c in range(K):
        lib[c] = _calibrated(shapes[GREEN_SHAPE[c]], GREEN[c], wl)
        lib[K + c] = _calibrated(shapes[DRY_SHAPE[c]], DRY[c], wl)
    for m in range(len(MINERALS)):
        lib[MINERAL0 + m] = _calibrated(shapes["mineral"], MINERALS[m], wl)
    lib[SNOW_SLOT] = lib[lc.SNOW]
    lib[PATH_SLOT] = 0.10 * (490.0 / wl) ** 1.5
    lib[CLOUD_SLOT] = _calibrated(shapes["cloud"], CLOUD, wl)
    lib = lib.astype(np.float32)
    lib.setflags(write=False)
    return lib


def _ndvi(green: np.ndarray, dry: np.ndarray) -> tuple[float, float, float, float]:
    return green[_B8] - green[_B4], green[_B8] + green[_B4], dry[_B8] - dry[_B4], dry[_B8] + dry[_B4]


def _greenness_from_s2(s2: np.ndarray, cls: int) -> np.ndarray:
    """Per-pixel share of the green state of class ``cls`` that makes the S2 pixel's NDVI (mixing inverted)."""
    red, nir = s2[:, _B4], s2[:, _B8]
    ndvi = (nir - red) / np.maximum(nir + red, 1e-4)
    d_green, s_green, d_dry, s_dry = _ndvi(GREEN[cls], DRY[cls])
    w = (d_dry - ndvi * s_dry) / (ndvi * (s_green - s_dry) - (d_green - d_dry))
    return np.clip(np.nan_to_num(w, nan=0.0), 0.0, 1.0).astype(np.float32)


def _abundances(rng, cover, zone, season_local, snow_rank, s2) -> np.ndarray:
    """[N, SLOTS, H, W] surface abundances (texture and snow applied, before light and clouds)."""
    classes = cover.classes.astype(np.int64)
    n, size, _ = classes.shape
    green = GREENNESS[zone, season_local]
    g = np.repeat(green[:, None], K, axis=1)
    g[:, lc.TREE] = EVERGREEN_TREES[zone] + (1 - EVERGREEN_TREES[zone]) * green
    g[:, lc.MANGROVE] = 1.0
    idx = np.arange(n)[:, None, None]
    w = g[idx, classes]  # [N, H, W] share of the green state
    for cls in (lc.CROP, lc.GRASS):
        w = np.where(classes == cls, _greenness_from_s2(s2, cls), w)
    primary = np.where(cover.field_margin, lc.GRASS, classes)
    abundance = np.zeros((n, SLOTS, size, size), dtype=np.float32)
    yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    # Mineral surfaces: roofs and streets of built-up blocks, rock patches of bare ground.
    rock = 3 - np.digitize(smooth_noise(rng, n, size, 1.5), [-0.39, 0.17, 0.78])
    mineral = np.where(classes == lc.BUILT, np.where(cover.street, 3, cover.roof_type), rock)
    is_mineral = (classes == lc.BUILT) | (classes == lc.BARE)
    soil_share = rng.uniform(0.15, 0.5, n)[:, None, None]
    patch = smooth_noise(rng, n, size, 0.8) > ndtri(1 - soil_share)  # soil/rock showing through shrubs, moss
    soil_patch = patch & (classes == lc.SHRUB)
    rock_patch = patch & (classes == lc.MOSS)
    green_slot = np.where(soil_patch, K + lc.CROP, np.where(rock_patch, MINERAL0 + 2, primary))
    green_slot = np.where(is_mineral, MINERAL0 + mineral, green_slot)
    dry_slot = np.where(green_slot < K, K + green_slot, green_slot)
    w = np.where(green_slot < K, w, 1.0)
    wet = 1 / (1 + np.exp(-3 * smooth_noise(rng, n, size, 1.0)))
    wet = np.where(classes == lc.WETLAND, 1 - wet, 0.0).astype(np.float32)
    abundance[idx, green_slot, yy, xx] = w * (1 - wet)
    abundance[idx, dry_slot, yy, xx] += (1 - w) * (1 - wet)
    abundance[:, lc.WATER] += wet
    texture = 1 + TEXTURE[classes] * smooth_noise(rng, n, size, 0.7)
    snowy = (snow_rank > 1 - SNOW_COVER[zone, season_local][:, None, None]) & (classes != lc.WATER)
    snow_weight = np.where(classes == lc.TREE, 0.45, 0.95) * snowy
    abundance *= (texture * (1 - snow_weight))[:, None]
    abundance[:, SNOW_SLOT] += snow_weight
    return abundance


def render_enmap(
    rng: np.random.Generator,
    cover: lc.LandCover,
    zone: np.ndarray,
    season: np.ndarray,
    lat: np.ndarray,
    shade: np.ndarray,
    snow_rank: np.ndarray,
    s2: dict[str, np.ndarray],
    wavelengths: tuple[float, ...],
) -> np.ndarray:
    """[N, B, H, W] float32 surface reflectance of the scenes ``s2`` (the S2 renderer's output) shows.

    Uses the S2 scene's illumination level, haze and cloud mask, and its red/NIR to find the growth
    stage of crop parcels and grassland patches. Water-vapour bands are NaN.
    """
    wl = np.asarray(wavelengths, dtype=np.float64)
    n, size, _ = cover.classes.shape
    season_local = local_season(season, lat)
    abundance = _abundances(rng, cover, zone, season_local, snow_rank, s2["reflectance"])

    # Endmembers per scene: within-class variability (a level and a smooth spectral tilt per class),
    # residual per-scene spectral gain, haze (loss of contrast) on surfaces; path radiance; cloud.
    lib = endmember_library(tuple(float(w) for w in wl))
    basis = np.stack([_g(wl, c, 250.0) for c in (500.0, 900.0, 1500.0, 2200.0)])  # [4, B]
    level = rng.normal(0, 0.07, (n, SLOTS, 1)) + rng.normal(0, 0.03, (n, SLOTS, 4)) @ basis
    gain = rng.normal(0, 0.04, (n, 1, 4)) @ basis
    haze = s2["haze"][:, None, None]
    transmission = 1 - 0.35 * (490.0 / wl)
    members = lib[None] * np.exp(level + gain) * (1 - haze * (1 - transmission))
    members[:, PATH_SLOT] = haze[:, 0] * lib[PATH_SLOT]
    members[:, CLOUD_SLOT] = lib[CLOUD_SLOT]

    # Light and clouds act on the abundances: illumination on the surface, clouds over everything.
    cloud = s2["cloud"].astype(np.float32)
    opacity = cloud * (0.3 + 0.7 * uniform_filter(cloud, size=(1, 5, 5), mode="nearest"))
    light = s2["brightness"][:, None, None] * (0.35 + 0.65 * shade)
    abundance *= (light * (1 - opacity))[:, None]
    abundance[:, PATH_SLOT] = 1 - opacity
    abundance[:, CLOUD_SLOT] = opacity
    image = np.matmul(members.astype(np.float32).transpose(0, 2, 1), abundance.reshape(n, SLOTS, -1))
    image = image.reshape(n, len(wl), size, size)

    # Sensor noise per 30 m cell, then the 30 m point-spread as a 3 x 3 mean on the 10 m grid.
    cells = -(-size // SPATIAL_WINDOW)
    noise = NOISE_STD * rng.standard_normal((n, len(wl), cells, cells), dtype=np.float32)
    cell = np.arange(size) // SPATIAL_WINDOW
    image += np.take(np.take(noise, cell, axis=2), cell, axis=3)
    out = uniform_filter(image, size=(1, 1, SPATIAL_WINDOW, SPATIAL_WINDOW), mode="nearest", output=np.float32)
    np.clip(out, 1e-4, 1.6, out=out)
    out[:, water_vapour_bands(wl)] = np.nan
    return out
