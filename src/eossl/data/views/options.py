"""The options of the views pipeline (``eossl views plan`` / ``build``), validated before any work."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eossl.errors import ConfigError

EQUAL_AREA_CRS = "EPSG:6933"
"""WGS 84 / NSIDC EASE-Grid 2.0 Global: equal-area and global, so footprint areas in any UTM zone compare."""


class ViewsOptions(BaseModel):
    """How tiles become multi-date patches; every field is a key of a views YAML file.

    Areas are in square metres of :data:`EQUAL_AREA_CRS`. ``min_overlap_area`` (default: one patch)
    is the smallest intersection that makes an edge of the overlap graph and a valid combination.
    Tiles less than ``min_days_apart`` apart are one pass, not two dates: they share no edge, and with
    footprints of intersection-over-union above ``duplicate_iou`` the later one is a duplicate.
    """

    model_config = ConfigDict(extra="forbid")
    patch_size: int = Field(128, ge=4, description="patch side in pixels of the common grid")
    stride: int | None = Field(None, ge=1, description="patch step in pixels (default: patch_size, no overlap)")
    resolution: float | None = Field(None, gt=0, description="common grid pixel size in metres (default: the tiles')")
    crs: str | None = Field(None, description="common grid CRS (default: per component, its tiles' most common)")
    min_overlap_area: float | None = Field(None, ge=0, description="m²; default one patch's area")
    min_days_apart: float = Field(1.0, ge=0, description="acquisitions closer than this are one pass")
    duplicate_iou: float = Field(0.95, gt=0, le=1, description="footprint IoU above which one pass is a duplicate")
    max_tuples: int = Field(8, ge=1, description="largest n-tuples kept per tile and size n (Algorithm 1)")
    max_dates: int = Field(32, ge=1, description="the largest tuple size grown")
    cover_tolerance: float = Field(0.01, ge=0, lt=1, description="a tuple is pruned when a larger one covers it")
    min_dates: int = Field(1, ge=1, description="patches with fewer dates are not emitted")
    max_nodata: float = Field(0.0, ge=0, le=1, description="largest share of nodata pixels in any date of a patch")
    max_patch_overlap: float = Field(0.5, ge=0, lt=1, description="largest share of a patch already emitted")
    resampling: Literal["nearest", "bilinear", "cubic", "average"] = "bilinear"
    footprint: Literal["data", "bounds"] = Field("data", description="valid-data outline or the raster bounds")
    sensor: str | None = Field(None, description="sensor preset or YAML (default: SOURCE/sensor.yaml, else tiles)")
    modality: str | None = Field(None, description="the store's modality name (default: the sensor's)")
    tile_sensor: str | None = Field(None, description="use only tiles of this sensor/platform name")

    @property
    def step(self) -> int:
        """The patch step in pixels."""
        return self.stride or self.patch_size


def load_views_options(path: Path | None = None, **overrides: object) -> ViewsOptions:
    """Options from a YAML file (or defaults) with ``overrides`` on top (``None`` values ignored); a bad key
    or value is a :class:`ConfigError` naming it (and the file)."""
    payload: dict[str, object] = {}
    where = "views options"
    if path is not None:
        where = f"views config '{path}'"
        if not Path(path).is_file():
            raise ConfigError(f"{where} does not exist")
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where} is not valid YAML: {' '.join(str(exc).split())}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{where}: expected a mapping of option: value, got {type(loaded).__name__}")
        payload.update(loaded or {})
    payload.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return ViewsOptions(**payload)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '?'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{where}: {problems}") from None
