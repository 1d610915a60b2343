"""Sentinel-2 L2A rendering: class spectra, phenology, snow, terrain light, haze, clouds, band resolution.

Spectra are surface reflectances (0..1) for bands B1..B12 without B10 and have the shapes that matter:
vegetation's red edge and NIR plateau, water's low NIR/SWIR, snow's bright visible and dark SWIR.
Some classes deliberately share a spectrum and differ only in spatial pattern: grassland and (green)
cropland, bare ground and built-up blocks on average, tree cover and mangroves.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter

from eossl.data.modality import S2_GSD, S2_WAVELENGTHS
from eossl.data.synth import landcover as lc
from eossl.data.synth.noise import smooth_noise

#                    B1    B2    B3    B4    B5    B6    B7    B8   B8A    B9   B11   B12
_GRASS_GREEN = [0.030, 0.040, 0.085, 0.050, 0.125, 0.290, 0.350, 0.370, 0.380, 0.380, 0.240, 0.120]
_SOIL = [0.080, 0.100, 0.140, 0.180, 0.210, 0.240, 0.260, 0.270, 0.280, 0.285, 0.330, 0.270]
GREEN = np.array(
    [
        [0.020, 0.025, 0.045, 0.025, 0.070, 0.220, 0.290, 0.310, 0.320, 0.320, 0.150, 0.070],  # tree
        [0.040, 0.050, 0.075, 0.070, 0.110, 0.200, 0.240, 0.260, 0.270, 0.270, 0.250, 0.150],  # shrub
        _GRASS_GREEN,  # grassland
        _GRASS_GREEN,  # cropland (green crops look like grass)
        [0.080, 0.100, 0.140, 0.175, 0.205, 0.235, 0.255, 0.265, 0.275, 0.280, 0.325, 0.265],  # built-up
        _SOIL,  # bare
        [0.850, 0.880, 0.870, 0.850, 0.820, 0.800, 0.780, 0.760, 0.740, 0.600, 0.080, 0.060],  # snow/ice
        [0.060, 0.070, 0.060, 0.040, 0.030, 0.020, 0.018, 0.015, 0.012, 0.010, 0.005, 0.003],  # water
        [0.040, 0.050, 0.075, 0.060, 0.100, 0.200, 0.240, 0.250, 0.260, 0.240, 0.140, 0.070],  # wetland
        [0.020, 0.028, 0.050, 0.030, 0.070, 0.200, 0.260, 0.280, 0.290, 0.290, 0.130, 0.060],  # mangroves
        [0.050, 0.060, 0.080, 0.090, 0.120, 0.180, 0.210, 0.220, 0.230, 0.230, 0.220, 0.150],  # moss
    ],
    dtype=np.float32,
)
# Senescent / dormant state of each class (identical to GREEN for classes without phenology).
DRY = GREEN.copy()
DRY[lc.TREE] = [0.040, 0.050, 0.070, 0.080, 0.110, 0.160, 0.180, 0.190, 0.200, 0.200, 0.230, 0.150]
DRY[lc.SHRUB] = [0.060, 0.075, 0.100, 0.120, 0.150, 0.190, 0.210, 0.220, 0.230, 0.230, 0.300, 0.220]
DRY[lc.GRASS] = _SOIL  # grazed / dry patches expose the soil
DRY[lc.CROP] = _SOIL
DRY[lc.WETLAND] = [0.045, 0.060, 0.080, 0.090, 0.110, 0.140, 0.150, 0.155, 0.160, 0.150, 0.150, 0.090]
# Mineral surfaces shared by bare ground (arranged as natural patches) and built-up areas (arranged as
# building blocks and streets): bright sand/concrete, red soil/tiles, dark rock/dark roofs, shadow/asphalt.
MINERALS = np.array(
    [
        [0.120, 0.150, 0.190, 0.230, 0.250, 0.270, 0.280, 0.290, 0.295, 0.300, 0.360, 0.300],
        [0.080, 0.085, 0.110, 0.220, 0.250, 0.260, 0.270, 0.280, 0.285, 0.290, 0.380, 0.320],
        [0.060, 0.070, 0.090, 0.100, 0.130, 0.170, 0.200, 0.210, 0.220, 0.220, 0.280, 0.230],
        [0.050, 0.060, 0.070, 0.080, 0.090, 0.100, 0.110, 0.115, 0.120, 0.120, 0.140, 0.130],
    ],
    dtype=np.float32,
)
CLOUD = np.array([0.45, 0.46, 0.47, 0.48, 0.48, 0.48, 0.48, 0.48, 0.48, 0.44, 0.36, 0.26], dtype=np.float32)
# Per-pixel texture amplitude of each class (relative): canopy gaps, shrub patches, rock, waves.
TEXTURE = np.array([0.12, 0.16, 0.05, 0.04, 0.05, 0.10, 0.03, 0.05, 0.10, 0.10, 0.12], dtype=np.float32)
VEGETATED = np.isin(np.arange(lc.NUM_CLASSES), [lc.TREE, lc.SHRUB, lc.GRASS, lc.WETLAND, lc.MOSS])

# Greenness per climate zone (rows) and local season (columns: winter, spring, summer, autumn).
GREENNESS = np.array(
    [
        [0.85, 0.90, 0.95, 0.90],
        [0.35, 0.50, 0.25, 0.20],
        [0.15, 0.60, 1.00, 0.50],
        [0.05, 0.45, 1.00, 0.35],
        [0.00, 0.10, 0.70, 0.15],
    ],
    dtype=np.float32,
)
EVERGREEN_TREES = np.array([1.0, 0.5, 0.4, 0.75, 0.5], dtype=np.float32)
SNOW_COVER = np.array(
    [[0, 0, 0, 0], [0, 0, 0, 0], [0.25, 0.05, 0, 0.05], [0.9, 0.35, 0, 0.25], [1.0, 0.75, 0.1, 0.55]], dtype=np.float32
)
CROP_SEASON = np.array([1.0, 0.6, 1.0, 0.9, 0.4], dtype=np.float32)


def local_season(season: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Meteorological season index (0 = DJF) -> local season (0 = winter), flipped south of the equator."""
    return np.where(lat < 0, (season + 2) % 4, season)


def _class_spectra(rng, zone, season_local, n):
    """[N, K, B] spectra of each class for each scene: phenology plus within-class variability."""
    green = GREENNESS[zone, season_local][:, None]  # [N, 1]
    g = np.repeat(green, lc.NUM_CLASSES, axis=1)
    g[:, lc.TREE] = EVERGREEN_TREES[zone] + (1 - EVERGREEN_TREES[zone]) * green[:, 0]
    g[:, lc.MANGROVE] = 1.0
    g[:, lc.CROP] = 1.0  # crops get their own stage per parcel
    spectra = g[:, :, None] * GREEN[None] + (1 - g[:, :, None]) * DRY[None]
    variability = np.exp(rng.normal(0, 0.07, (n, lc.NUM_CLASSES, 1)) + rng.normal(0, 0.03, spectra.shape))
    return (spectra * variability).astype(np.float32)


def _share_threshold(field: np.ndarray, share: np.ndarray) -> np.ndarray:
    """Per-field threshold above which ``share`` of the pixels lie ([N] -> [N, 1, 1])."""
    ranked = np.sort(field.reshape(len(field), -1), axis=1)
    position = np.clip(((1 - share) * ranked.shape[1]).astype(int), 0, ranked.shape[1] - 1)
    return ranked[np.arange(len(field)), position][:, None, None]


def _top_share(field: np.ndarray, share: np.ndarray) -> np.ndarray:
    return field > _share_threshold(field, share)


def _degrade_resolution(image: np.ndarray) -> np.ndarray:
    """Average the 20 m and 60 m bands over their native footprint (still sampled on the 10 m grid)."""
    out = image.copy()
    size = image.shape[-1]
    for band, gsd in enumerate(S2_GSD):
        factor = int(gsd // 10)
        if factor > 1:
            smoothed = uniform_filter(image[:, band], size=(1, factor, factor), mode="nearest")
            centres = np.minimum(np.arange(-(-size // factor)) * factor + factor // 2, size - 1)
            coarse = smoothed[:, centres][:, :, centres]
            out[:, band] = np.repeat(np.repeat(coarse, factor, axis=1), factor, axis=2)[:, :size, :size]
    return out


def render_sentinel2(
    rng: np.random.Generator,
    cover: lc.LandCover,
    zone: np.ndarray,
    season: np.ndarray,
    lat: np.ndarray,
    shade: np.ndarray,
    snow_rank: np.ndarray,
    cloud_probability: float,
) -> dict[str, np.ndarray]:
    """Render one scene per map. Returns reflectance [N, 12, H, W] (float32), cloud mask and nuisances.

    ``shade`` is the terrain hillshade [N, H, W]; ``snow_rank`` in [0, 1] orders pixels by how early
    they get snow (elevation plus noise) so that snow lines follow the terrain.
    """
    classes = cover.classes.astype(np.int64)
    n, size, _ = classes.shape
    season_local = local_season(season, lat)
    spectra = _class_spectra(rng, zone, season_local, n)  # [N, K, B]
    idx = np.arange(n)[:, None, None]
    image = spectra[idx, classes]  # [N, H, W, B]

    # Cropland: each parcel at its own growth stage, 1-px grassy margins between parcels.
    phase = rng.random((n, 64 * 64))
    parcel = np.where(cover.parcel_id >= 0, cover.parcel_id, 0)
    stage = np.sin(2 * np.pi * (season_local[:, None, None] / 4 + phase[idx, parcel]))
    stage = np.clip(stage, 0, 1) * CROP_SEASON[zone][:, None, None]
    crop_pixel = stage[..., None] * GREEN[lc.CROP] + (1 - stage[..., None]) * DRY[lc.CROP]
    crop_pixel = np.where(cover.field_margin[..., None], spectra[:, lc.GRASS][:, None, None], crop_pixel)
    image = np.where((classes == lc.CROP)[..., None], crop_pixel, image)

    # Built-up: roof materials per block, asphalt streets and roads.
    urban = np.where(cover.street[..., None], MINERALS[3], MINERALS[cover.roof_type])
    image = np.where((classes == lc.BUILT)[..., None], urban, image)

    # Bare ground: the same minerals as built-up areas in about the same shares (a third of the area
    # dark like streets, the rest split between the roof-like surfaces), as natural patches not blocks.
    rock = 3 - np.digitize(smooth_noise(rng, n, size, 1.5), [-0.39, 0.17, 0.78])
    image = np.where((classes == lc.BARE)[..., None], MINERALS[rock], image)

    # Grassland: irregular patches, each at its own stage between green and bare soil, drawn like crop
    # parcels, so both classes have the same pixel histogram and differ only in shape.
    patch_id = np.digitize(smooth_noise(rng, n, size, 3.0), [-0.84, -0.25, 0.25, 0.84])
    patch_stage = np.clip(np.sin(2 * np.pi * (season_local[:, None] / 4 + rng.random((n, 5)))), 0, 1)
    patch_stage = (patch_stage * CROP_SEASON[zone][:, None])[np.arange(n)[:, None, None], patch_id]
    grass_pixel = patch_stage[..., None] * GREEN[lc.GRASS] + (1 - patch_stage[..., None]) * DRY[lc.GRASS]
    image = np.where((classes == lc.GRASS)[..., None], grass_pixel, image)

    # Shrubland and moss are fine mosaics with soil or rock.
    soil_share = rng.uniform(0.15, 0.5, n)
    for cls, sigma, ground in ((lc.SHRUB, 0.8, DRY[lc.CROP]), (lc.MOSS, 0.8, MINERALS[2])):
        patch = _top_share(smooth_noise(rng, n, size, sigma), soil_share) & (classes == cls)
        image = np.where(patch[..., None], ground, image)

    # Wetland: fine mixture of open water and marsh vegetation.
    wet = 1 / (1 + np.exp(-3 * smooth_noise(rng, n, size, 1.0)))
    image = np.where(
        (classes == lc.WETLAND)[..., None],
        wet[..., None] * image + (1 - wet[..., None]) * spectra[:, lc.WATER][:, None, None],
        image,
    )

    texture = 1 + TEXTURE[classes] * smooth_noise(rng, n, size, 0.7)
    image = image * texture[..., None]

    # Seasonal snow on land below the snow line (permanent snow/ice is already in the map).
    cover_fraction = SNOW_COVER[zone, season_local]
    snowy = (snow_rank > 1 - cover_fraction[:, None, None]) & (classes != lc.WATER)
    snow_weight = np.where(classes == lc.TREE, 0.45, 0.95) * snowy
    image = image * (1 - snow_weight[..., None]) + snow_weight[..., None] * GREEN[lc.SNOW]

    # Illumination: per-scene level (residual sun/BRDF effects) times terrain shading, and per-band
    # gains (residual atmospheric correction / calibration differences between scenes).
    brightness = rng.uniform(0.6, 1.4, n).astype(np.float32)
    band_gain = np.exp(rng.normal(0, 0.08, (n, 1, 1, len(S2_WAVELENGTHS)))).astype(np.float32)
    image = image * (brightness[:, None, None] * (0.35 + 0.65 * shade))[..., None] * band_gain

    # Haze: additive path radiance and loss of contrast, both stronger at short wavelengths.
    haze = (rng.beta(1.2, 4.0, n) * 0.8).astype(np.float32)
    wl = np.asarray(S2_WAVELENGTHS, dtype=np.float32)
    path = 0.10 * (490.0 / wl) ** 1.5
    transmission = 1 - 0.35 * (490.0 / wl)
    image = image * (1 - haze[:, None, None, None] * (1 - transmission)) + haze[:, None, None, None] * path

    # Clouds in a fraction of scenes, with an opacity field and a binary mask.
    cloudy = rng.random(n) < cloud_probability
    coverage = rng.uniform(0.05, 0.6, n)
    cloud_field = smooth_noise(rng, n, size, 5.0)
    threshold = _share_threshold(cloud_field, coverage)
    opacity = np.clip((cloud_field - threshold) * 1.5 + 0.3, 0, 1) * (cloud_field > threshold)
    opacity = (opacity * cloudy[:, None, None]).astype(np.float32)
    image = image * (1 - opacity[..., None]) + opacity[..., None] * CLOUD

    image = np.moveaxis(image, -1, 1).astype(np.float32)  # [N, B, H, W]
    image = image + rng.normal(0, 0.003, image.shape).astype(np.float32)  # sensor noise, then resampling
    image = _degrade_resolution(image)
    return {
        "reflectance": np.clip(image, 1e-4, 1.6),
        "cloud": (opacity > 0.2).astype(np.uint8),
        "brightness": brightness,
        "haze": haze,
        "cloudy": cloudy,
    }
