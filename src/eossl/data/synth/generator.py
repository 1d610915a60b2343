"""The embedded synthetic Earth: co-registered S2/S1/DEM/land-cover samples at many places and seasons.

Every location gets one static land-cover map and DEM, and ``seasons`` scenes (one per meteorological
season), each with its own phenology, snow, illumination, haze, clouds and speckle. The generator is
vectorised over locations and deterministic for a given seed and chunk size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from eossl.data.modality import CLOUD_MASK, DEM, SENTINEL1_GRD, SENTINEL2_L2A, Modality
from eossl.data.store import StoreWriter
from eossl.data.synth import landcover as lc
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
from eossl.data.targets import Dates, Target

SEASON_NAMES = ("DJF", "MAM", "JJA", "SON")
MULTILABEL_MIN_SHARE = 0.05


@dataclass(frozen=True)
class SynthSpec:
    """What to generate: ``num_locations x seasons`` samples of ``patch_size`` pixels at 10 m."""

    num_locations: int = 1000
    seasons: int = 4
    patch_size: int = 32
    cloud_probability: float = 0.2
    seed: int = 0
    chunk_locations: int = 64

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
    return arrays, table


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
    writer = StoreWriter(
        path,
        spec.num_samples,
        modalities,
        extra_arrays={"multilabel": ((lc.NUM_CLASSES,), "uint8")},
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
        },
        targets=synthetic_targets(),
        dates=Dates("location_id", "season"),
    )


def synthetic_targets() -> list[Target]:
    """The targets a synthetic store declares (the names downstream configs use)."""
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
