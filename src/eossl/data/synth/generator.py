"""The embedded synthetic Earth: co-registered S2/S1/DEM/land-cover samples at many places and seasons.

Every location gets one static land-cover map and DEM, and ``seasons`` scenes (one per meteorological
season), each with its own phenology, snow, illumination, haze, clouds and speckle. The generator is
vectorised over locations and deterministic for a given seed and chunk size.

Options add what dense tasks and hyperspectral runs need, each from its own random stream so that the
store without them stays as it was: forest targets (:mod:`~eossl.data.synth.forest`), a second date
one year later with real land-cover changes (:mod:`~eossl.data.synth.changes`) and an EnMAP-like
hyperspectral cube (:mod:`~eossl.data.synth.hyperspectral`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from eossl.data.modality import CLOUD_MASK, DEM, SENTINEL1_GRD, SENTINEL2_L2A, Modality
from eossl.data.store import StoreWriter
from eossl.data.synth import landcover as lc
from eossl.data.synth.changes import CHANGE_TYPES, change_pairs, change_targets, inject_changes
from eossl.data.synth.forest import forest_arrays, forest_extra_arrays, forest_targets
from eossl.data.synth.hyperspectral import (
    SPATIAL_WINDOW,
    WATER_VAPOUR_NM,
    enmap_modality,
    render_enmap,
    water_vapour_bands,
)
from eossl.data.synth.noise import smooth_noise
from eossl.data.synth.sentinel1 import render_sentinel1
from eossl.data.synth.sentinel2 import SNOW_COVER, local_season, render_sentinel2
from eossl.data.synth.terrain import (
    hillshade,
    regional_elevation,
    sample_dem,
    sample_locations,
    slope_aspect,
)
from eossl.data.targets import Dates, Pair, Target
from eossl.errors import ConfigError

SEASON_NAMES = ("DJF", "MAM", "JJA", "SON")
MULTILABEL_MIN_SHARE = 0.05


@dataclass(frozen=True)
class SynthSpec:
    """What to generate: ``num_locations x seasons`` samples of ``patch_size`` pixels at 10 m.

    ``forest_targets``: add the arrays and targets ``forest`` (segmentation) and ``tree_density``
    (pixel-regression). ``change_fraction`` > 0: a second acquisition ``s2_after`` per row (same season,
    one year later) with real changes at that share of the locations, the change target ``change`` and
    the pair ``s2_change``. ``hyperspectral_bands`` > 0: an EnMAP-like cube ``enmap`` with that many bands.
    """

    num_locations: int = 1000
    seasons: int = 4
    patch_size: int = 32
    cloud_probability: float = 0.2
    seed: int = 0
    chunk_locations: int = 64
    forest_targets: bool = False
    change_fraction: float = 0.0
    hyperspectral_bands: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.change_fraction <= 1.0:
            raise ConfigError(f"change_fraction must be in [0, 1], got {self.change_fraction}")
        if self.hyperspectral_bands < 0:
            raise ConfigError(f"hyperspectral_bands must be >= 0, got {self.hyperspectral_bands}")

    @property
    def num_samples(self) -> int:
        return self.num_locations * self.seasons


def targets_from_map(classes: np.ndarray) -> dict[str, np.ndarray]:
    """Classification and regression targets derived from land-cover maps [N, H, W]."""
    n = classes.shape[0]
    counts = np.stack([np.bincount(c.ravel(), minlength=lc.NUM_CLASSES) for c in classes])
    share = counts / classes[0].size
    return {
        "label": counts.argmax(axis=1).astype(np.int64),
        "multilabel": (share >= MULTILABEL_MIN_SHARE).astype(np.uint8).reshape(n, lc.NUM_CLASSES),
        "tree_cover": (share[:, lc.TREE] + share[:, lc.MANGROVE]).astype(np.float32),
    }


def generate_chunks(spec: SynthSpec) -> Iterator[tuple[dict[str, np.ndarray], pd.DataFrame]]:
    """Yield ``(arrays, table)`` per chunk of locations; arrays are keyed by modality/target name."""
    rng_locations = np.random.default_rng([spec.seed, 0])
    lat_all, lon_all = sample_locations(rng_locations, spec.num_locations)
    for start in range(0, spec.num_locations, spec.chunk_locations):
        stop = min(start + spec.chunk_locations, spec.num_locations)
        rng = np.random.default_rng([spec.seed, 1, start])
        yield _generate_locations(rng, spec, np.arange(start, stop), lat_all[start:stop], lon_all[start:stop])


def _generate_locations(rng, spec: SynthSpec, location_id, lat, lon):
    size, seasons, n = spec.patch_size, spec.seasons, len(location_id)
    base_elevation = regional_elevation(lat, lon) * rng.uniform(0.6, 1.2, n)
    zone = lc.climate_zone(lat, lon, base_elevation)
    cover = lc.sample_landcover(rng, lc.class_prior(zone, base_elevation), size)
    dem = sample_dem(rng, base_elevation, size)
    dem = np.where(cover.classes == lc.WATER, np.quantile(dem, 0.1, axis=(1, 2))[:, None, None], dem)
    start = int(location_id[0])
    slope, aspect = slope_aspect(dem)
    relief = (dem - dem.min(axis=(1, 2), keepdims=True)) / (np.ptp(dem, axis=(1, 2), keepdims=True) + 1e-3)
    snow_rank = np.clip(0.7 * relief + 0.3 * (0.5 + 0.2 * smooth_noise(rng, n, size, 3.0)), 0, 1)
    targets = targets_from_map(cover.classes)

    # One scene per (location, season): repeat the static layers, season varies fastest.
    rep = lambda a: np.repeat(a, seasons, axis=0)  # noqa: E731
    season = np.tile(np.arange(seasons) * (4 // seasons), n)
    scene_cover = lc.LandCover(*(rep(getattr(cover, f)) for f in cover.__dataclass_fields__))
    scene_zone, scene_lat = rep(zone), rep(lat)
    sun_elevation = np.radians(np.clip(90 - np.abs(scene_lat - 23.4 * np.cos(np.pi * season / 2) * -1), 12, 80))
    shade = hillshade(rep(slope), rep(aspect), sun_elevation)
    s2 = render_sentinel2(
        rng, scene_cover, scene_zone, season, scene_lat, shade, rep(snow_rank), spec.cloud_probability
    )
    wet_snow = SNOW_COVER[scene_zone, local_season(season, scene_lat)] > 0.2
    s1 = render_sentinel1(rng, scene_cover, rep(slope), rep(aspect), wet_snow.astype(np.float32))

    arrays = {
        "s2": np.round(s2["reflectance"] * 10000).astype(np.uint16),
        "s1": s1,
        "dem": rep(dem)[:, None].astype(np.float32),
        "lulc": scene_cover.classes[:, None],
        "cloud": s2["cloud"][:, None],
        "multilabel": rep(targets["multilabel"]),
    }
    table = pd.DataFrame(
        {
            "location_id": rep(location_id),
            "season": [SEASON_NAMES[s] for s in season],
            "lat": scene_lat.round(5),
            "lon": rep(lon).round(5),
            "climate_zone": [lc.CLIMATE_ZONES[z] for z in scene_zone],
            "elevation_m": rep(dem.mean(axis=(1, 2))).round(1),
            "label": rep(targets["label"]),
            "tree_cover": rep(targets["tree_cover"]).round(4),
            "cloud_fraction": s2["cloud"].mean(axis=(1, 2)).round(4),
            "haze": s2["haze"].round(4),
            "brightness": s2["brightness"].round(4),
        }
    )
    if spec.forest_targets:
        arrays.update({name: rep(a) for name, a in forest_arrays(cover.classes).items()})
    if spec.change_fraction > 0:
        args = (scene_zone, season, scene_lat, shade, rep(snow_rank), spec.cloud_probability)
        _add_second_date(np.random.default_rng([spec.seed, 2, start]), spec, cover, relief, rep, args, arrays, table)
    if spec.hyperspectral_bands > 0:
        wavelengths = enmap_modality(spec.hyperspectral_bands).wavelengths_nm
        arrays["enmap"] = render_enmap(
            np.random.default_rng([spec.seed, 3, start]),
            scene_cover, scene_zone, season, scene_lat, shade, rep(snow_rank), s2, wavelengths,
        )  # fmt: skip
    return arrays, table


def _add_second_date(rng, spec: SynthSpec, cover: lc.LandCover, relief, rep, scene_args, arrays, table) -> None:
    """Changes at ``spec.change_fraction`` of the locations and the scenes one year later (``s2_after``)."""
    changes = inject_changes(rng, cover, relief, spec.change_fraction)
    after = lc.LandCover(*(rep(getattr(changes.after, f)) for f in changes.after.__dataclass_fields__))
    zone, season, lat, shade, snow_rank, cloud_probability = scene_args
    s2 = render_sentinel2(rng, after, zone, season, lat, shade, snow_rank, cloud_probability)
    arrays["s2_after"] = np.round(s2["reflectance"] * 10000).astype(np.uint16)
    arrays["change"] = rep(changes.mask.astype(np.uint8))[:, None]
    table["change_type"] = [CHANGE_TYPES[k] for k in rep(changes.kind)]
    table["change_share"] = rep(changes.share).round(4)
    table["cloud_fraction_after"] = s2["cloud"].mean(axis=(1, 2)).round(4)


LULC = Modality(
    name="lulc",
    kind="categorical",
    bands=("worldcover_class",),
    dtype="uint8",
    gsd_m=(10.0,),
    class_names=lc.CLASS_NAMES,
)


def synthesize_store(
    path: str | Path, spec: SynthSpec, overwrite: bool = False, progress: Callable[[int, int], None] | None = None
) -> Path:
    """Generate the synthetic Earth into a sample store at ``path`` (atomically)."""
    modalities = {"s2": SENTINEL2_L2A, "s1": SENTINEL1_GRD, "dem": DEM, "lulc": LULC, "cloud": CLOUD_MASK}
    extra: dict[str, tuple[tuple[int, ...], str]] = {"multilabel": ((lc.NUM_CLASSES,), "uint8")}
    attrs: dict[str, object] = {}
    if spec.forest_targets:
        extra.update(forest_extra_arrays(spec.patch_size))
    if spec.change_fraction > 0:
        modalities["s2_after"] = replace(SENTINEL2_L2A, name="s2_after")
        extra["change"] = ((1, spec.patch_size, spec.patch_size), "uint8")
        attrs["change"] = {
            "pair": "s2_change",
            "change_types": list(CHANGE_TYPES),
            "description": "s2_after: the same season one year later (own clouds, haze, illumination), "
            f"land-cover changes at {spec.change_fraction:.0%} of the locations (columns change_type, change_share)",
        }
    if spec.hyperspectral_bands > 0:
        enmap = enmap_modality(spec.hyperspectral_bands)
        modalities["enmap"] = enmap
        invalid = water_vapour_bands(enmap.wavelengths_nm)
        attrs["enmap"] = {
            "description": "EnMAP-like L2A surface reflectance rendered from continuous class spectra; 30 m GSD "
            f"emulated by a {SPATIAL_WINDOW}x{SPATIAL_WINDOW} mean on the 10 m grid (co-registered with s2); "
            "water-vapour bands are NaN in every pixel (statistics: valid 0, placeholders mean 0, std 1)",
            "gsd_m": 30.0,
            "water_vapour_nm": [list(r) for r in WATER_VAPOUR_NM],
            "invalid_bands": [b for b, bad in zip(enmap.bands, invalid, strict=True) if bad],
        }
    writer = StoreWriter(
        path,
        spec.num_samples,
        modalities,
        extra_arrays=extra,
        shard_size=spec.chunk_locations * spec.seasons,
        overwrite=overwrite,
    )
    try:
        for arrays, table in generate_chunks(spec):
            writer.write(arrays, table)
            if progress:
                progress(writer.written, spec.num_samples)
    except BaseException:
        writer.abort()
        raise
    return writer.close(
        {
            "class_names": list(lc.CLASS_NAMES),
            "worldcover_codes": list(lc.WORLDCOVER_CODES),
            "source": "eossl synthetic Earth",
            "synth_spec": asdict(spec),
            **attrs,
        },
        targets=synthetic_targets(spec),
        dates=Dates("location_id", "season"),
        pairs=synthetic_pairs(spec),
    )


def synthetic_pairs(spec: SynthSpec | None = None) -> list[Pair]:
    """The change pairs a synthetic store of ``spec`` declares (none without ``change_fraction``)."""
    return change_pairs() if spec is not None and spec.change_fraction > 0 else []


def synthetic_targets(spec: SynthSpec | None = None) -> list[Target]:
    """The targets a synthetic store of ``spec`` declares (the names downstream configs use).

    Without ``spec`` (or with the default one): the base targets ``label``, ``multilabel``, ``mask``,
    ``tree_cover``; options add ``forest`` and ``tree_density`` (``forest_targets``) and ``change``
    (``change_fraction`` > 0).
    """
    targets = _base_targets()
    if spec is not None and spec.forest_targets:
        targets += forest_targets()
    if spec is not None and spec.change_fraction > 0:
        targets += change_targets()
    return targets


def _base_targets() -> list[Target]:
    names = lc.CLASS_NAMES
    return [
        Target(
            "label",
            "single-label",
            column="label",
            class_names=names,
            description="majority land-cover class (metadata.csv)",
        ),
        Target(
            "multilabel",
            "multi-label",
            array="multilabel",
            class_names=names,
            description=f"classes covering >= {MULTILABEL_MIN_SHARE:.0%} of the patch (array)",
        ),
        Target(
            "mask",
            "segmentation",
            array="lulc",
            class_names=names,
            strata="multilabel",
            description="land-cover map (array lulc)",
        ),
        Target(
            "tree_cover",
            "regression",
            column="tree_cover",
            strata="label",
            description="tree + mangrove fraction (metadata.csv)",
        ),
    ]
