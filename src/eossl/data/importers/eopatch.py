"""eo-learn EOPatches (Sinergise's eo-learn, the format of its land-cover and crop examples): one folder
per patch of land, its features as NumPy arrays by feature type.

On-disk layout (``EOPatch.save`` of eo-learn >= 1.0; SOURCE is one EOPatch or a folder of them)::

    <patch>/data/<FEATURE>.npy            (time, height, width, channels) float, e.g. BANDS, NDVI, CLP
    <patch>/data_timeless/<FEATURE>.npy   (height, width, channels), e.g. DEM
    <patch>/mask/<FEATURE>.npy            (time, height, width, 1) integer, e.g. IS_DATA, CLM
    <patch>/mask_timeless/<FEATURE>.npy   (height, width, 1) integer, e.g. LULC
    <patch>/scalar_timeless/, label_timeless/, vector/ ...   (not imported)
    <patch>/timestamps.json               the acquisition times, ISO strings
    <patch>/bbox.geojson                  the patch's polygon with its CRS (urn:ogc:def:crs:EPSG::32633)

Any file may be gzip-compressed (``.npy.gz``, ``.json.gz``, ``.geojson.gz``); ``.npy`` files are read with
``allow_pickle=False``. eo-learn < 1.0 pickled its metadata (``timestamp.pkl``, ``bbox.pkl``): such
patches are refused, since unpickling a file can run code; re-save them with a current eo-learn.

What the store holds: each chosen feature (option ``features``: feature -> modality; default every
float feature of ``data`` and ``data_timeless``) as a modality in its stored values (float32; eo-learn's
``BANDS`` / ``BANDS-S2-L1C`` with 13 bands get the ``s2-l1c`` preset's band names and wavelengths as
reflectance 0-1, scale 1). Every selected timestamp of each patch window is one row (``dates: all`` or
at most N evenly spaced dates), timeless features repeated on each; rows of one window share
``location_id`` (declared as dates). ``label`` makes a ``mask_timeless`` feature a segmentation target
(class ids remapped to 0..K-1 from the values present, or the raw values named by ``class_names``).
``valid_mask`` / ``invalid_mask`` (e.g. IS_DATA / CLM) turn invalid pixels into NaN and filter windows
over ``max_invalid``. ``lat`` / ``lon`` are the window centres from the bbox.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from eossl.data.importers._base import IMPORTERS, Filtered, Importer, ImporterOptions, ImportItem, ImportPlan, Sample
from eossl.data.importers._eopatch_files import (
    TYPES,
    array_header,
    is_patch,
    list_features,
    load_array,
    read_bbox,
    read_timestamps,
)
from eossl.data.importers.raster import invalid_share, patch_grid
from eossl.data.modality import Modality
from eossl.data.sensors import SENSORS, sensor_modality
from eossl.data.targets import Dates, Target
from eossl.errors import ConfigError, ImportDataError

TEMPORAL = ("data", "mask")
PRESETS = {"BANDS": "s2-l1c", "BANDS-S2-L1C": "s2-l1c", "BANDS-S2-L2A": "s2-l2a"}
WHOLE_PATCH_MAX = 128
INVALID = "more than max_invalid invalid pixels (valid/invalid mask or NaN)"


class EOPatchOptions(ImporterOptions):
    """Which features become modalities and targets, which dates and windows become rows."""

    features: dict[str, str] | None = Field(
        None, description="feature (NAME or type/NAME) -> modality name; default: every float data(_timeless) feature"
    )
    band_names: dict[str, list[str]] = Field({}, description="feature -> its band names (default: FEATURE_i)")
    label: str | None = Field(None, description="mask_timeless feature to store as a segmentation target")
    label_name: str | None = Field(None, description="the target's name (default: the feature's, lower case)")
    class_names: list[str] | None = Field(None, description="names of the label's raw values 0..K-1")
    dates: Literal["all"] | int = Field("all", description="'all' timestamps, or at most N evenly spaced ones")
    patch_size: int | None = Field(
        None, ge=1, description=f"window side (default: whole patch if <= {WHOLE_PATCH_MAX})"
    )
    stride: int | None = Field(None, ge=1, description="step between windows (default: patch_size)")
    valid_mask: str | None = Field(None, description="mask feature, nonzero = valid (e.g. IS_DATA)")
    invalid_mask: str | None = Field(None, description="mask feature, nonzero = invalid (e.g. CLM)")
    max_invalid: float = Field(0.5, ge=0.0, le=1.0, description="largest invalid share of a kept window")


def _resolve(name: str, features: dict[str, Path], patch: Path, types: tuple[str, ...] = TYPES) -> str:
    """``NAME`` or ``type/NAME`` -> the ``type/NAME`` key of a patch's feature."""
    keys = [name] if "/" in name else [f"{t}/{name}" for t in types if f"{t}/{name}" in features]
    if len(keys) != 1 or keys[0] not in features:
        what = "is in several feature types: name one as type/NAME" if len(keys) > 1 else "is not there"
        base = name.split("/")[-1]
        other = [p.name for t in types for p in (patch / t).glob(f"{base}*") if p.name.split(".")[0] == base]
        if other and len(keys) <= 1:
            what = f"is stored as {other[0]}, which eossl does not read (only .npy / .npy.gz; never pickles)"
        raise ImportDataError(f"'{patch}': feature '{name}' {what} (features: {', '.join(features) or 'none'})")
    return keys[0]


def _modality(
    key: str, name: str, shape: tuple[int, ...], dtype: np.dtype, options: EOPatchOptions, gsd: float
) -> Modality:
    ftype, feature = key.split("/")
    channels = shape[-1]
    bands = tuple(options.band_names.get(feature, ()))
    if bands and len(bands) != channels:
        raise ConfigError(f"band_names.{feature}: {len(bands)} names for a feature of {channels} channels")
    preset = SENSORS.get(PRESETS.get(feature, ""))
    if preset is not None and (set(bands) <= set(preset.bands)) and (bands or channels == preset.num_bands):
        index = [preset.bands.index(b) for b in bands] if bands else list(range(preset.num_bands))
        return replace(
            sensor_modality(PRESETS[feature], name),
            bands=tuple(preset.bands[i] for i in index),
            wavelengths_nm=tuple(preset.wavelengths_nm[i] for i in index) if preset.wavelengths_nm else None,
            gsd_m=tuple(preset.gsd_m[i] for i in index),
            dtype="float32",
            scale=1.0,
            offset=0.0,
            nodata=None,
            units="reflectance",
        )
    mask = ftype.startswith("mask")
    kind = "mask" if mask else "elevation" if feature.upper() in ("DEM", "ELEVATION") else "stack"
    stored = "float32" if np.issubdtype(dtype, np.floating) else "uint8" if dtype == np.bool_ else dtype.name
    bands = bands or ((feature,) if channels == 1 else tuple(f"{feature}_{i}" for i in range(channels)))
    units = "m" if kind == "elevation" else ""
    return Modality(name, kind, bands, stored, (gsd,) * channels, units=units)


def _gsd(bbox: tuple[str, tuple[float, float, float, float]] | None, height: int) -> float:
    """Pixel size in metres from the bbox (10 m without one; degrees of a geographic CRS as 111.32 km)."""
    from rasterio.crs import CRS

    if bbox is None:
        return 10.0
    crs, (_, miny, _, maxy) = bbox
    size = (maxy - miny) / height
    return round(size * 111_320 if CRS.from_user_input(crs).is_geographic else size, 2)


def _windows(height: int, width: int, size: int | None, stride: int | None) -> list[tuple[int, int, int, int]]:
    """``(row, col, height, width)`` windows: the whole patch when ``size`` is None."""
    if size is None:
        return [(0, 0, height, width)]
    return [(p.row, p.col, size, size) for p in patch_grid(height, width, size, stride)]


def _pick(count: int, dates: str | int) -> list[int]:
    if dates == "all" or count <= int(dates):
        return list(range(count))
    return sorted({round(float(i)) for i in np.linspace(0, count - 1, int(dates))})


def _select(patch: Path, options: EOPatchOptions) -> tuple[dict[str, str], dict[str, str], str | None]:
    """From the first patch: chosen features (``type/NAME`` -> modality), masks (role -> feature), label."""
    first = list_features(patch)
    default = {
        k.split("/")[1]: "s2" if k.split("/")[1] in PRESETS else k.split("/")[1].lower().replace("-", "_")
        for k, p in first.items()
        if k.split("/")[0] in ("data", "data_timeless") and np.issubdtype(array_header(p)[1], np.floating)
    }
    chosen = {_resolve(f, first, patch): m for f, m in (options.features or default).items()}
    if not chosen or len(set(chosen.values())) != len(chosen):
        raise ConfigError(f"features: {chosen or 'none found'}: name each feature's modality once")
    masks = {
        role: _resolve(name, first, patch, ("mask", "mask_timeless"))
        for role, name in (("valid", options.valid_mask), ("invalid", options.invalid_mask))
        if name
    }
    if masks and not any(k.split("/")[0] in TEMPORAL for k in chosen):
        raise ConfigError("valid_mask / invalid_mask mark invalid dates of temporal features; none is chosen")
    label = _resolve(options.label, first, patch, ("mask_timeless",)) if options.label else None
    return chosen, masks, label


@IMPORTERS.register("eopatch")
class EOPatch(Importer):
    """eo-learn EOPatch folders -> one row per window and date; features as modalities, a label as target."""

    config = EOPatchOptions

    def plan(self, source: Path, options: EOPatchOptions) -> ImportPlan:
        patches = [source] if is_patch(source) else [p for p in sorted(source.iterdir()) if is_patch(p)]
        if not patches:
            raise ImportDataError(
                f"'{source}': not an EOPatch (no data/, mask_timeless/, bbox.geojson ...) nor a folder of them"
            )
        if isinstance(options.dates, int) and options.dates < 1:
            raise ConfigError(f"dates: expected 'all' or a positive number, got {options.dates}")
        chosen, masks, label = _select(patches[0], options)
        first = list_features(patches[0])
        gsd = _gsd(read_bbox(patches[0]), array_header(first[next(iter(chosen))])[0][-3])
        modalities = {m: _modality(k, m, *array_header(first[k]), options, gsd) for k, m in chosen.items()}
        temporal = any(k.split("/")[0] in TEMPORAL for k in chosen)
        keys = [*chosen, *masks.values(), *([label] if label else [])]
        items, capacity, shapes, values = [], 0, set(), set()
        for patch in patches:
            features = list_features(patch)
            files = tuple(features[k] for k in keys if k in features)
            try:  # a bad patch is left for read to report, so that on_error=skip can leave it out
                missing = [k for k in keys if k not in features]
                if missing:
                    raise ImportDataError(f"'{patch}': lacks features {missing} (has {', '.join(features) or 'none'})")
                shape = {array_header(features[k])[0][-3:-1] for k in keys}
                timed = [k for k in chosen if k.split("/")[0] in TEMPORAL]
                count = array_header(features[timed[0]])[0][0] if timed else 1
                found = set(np.unique(load_array(features[label])).tolist()) if label else set()
            except ImportDataError as exc:
                items.append(ImportItem(patch.name, files, {"error": str(exc)}))
                capacity += 1
                continue
            shapes |= shape
            values |= found
            info = {"patch": str(patch), "keys": keys, "count": count, "files": {k: str(features[k]) for k in keys}}
            items.append(ImportItem(patch.name, files, info))
        size = options.patch_size
        if size is None and not (len(shapes) == 1 and max(next(iter(shapes))) <= WHOLE_PATCH_MAX):
            size = 64
        for item in items:
            if "error" not in item.info:
                h, w = array_header(item.files[0])[0][-3:-1]
                n = len(_windows(h, w, size, options.stride)) * len(_pick(item.info["count"], options.dates))
                capacity += n
        window = (size, size) if size else next(iter(shapes), (1, 1))
        extra, targets, notes = {}, [], [f"features -> modalities: {chosen}"]
        notes.append(f"windows: {'whole patch' if size is None else f'{size} px'}, one row per window and date")
        if label:
            lut, names = self._classes(sorted(values), options, label)
            target = options.label_name or label.split("/")[1].lower()
            dtype = "uint8" if len(names) <= 256 else "uint16"
            extra[target] = ((1, *window), dtype)
            targets.append(Target(target, "segmentation", array=target, class_names=names))
            for item in items:
                item.info.update(lut=lut, label=label, target=target)
            notes.append(f"label {label}: raw values {sorted(values)} -> class ids {dict(enumerate(names))}")
        if masks:
            notes.append(
                f"masks {masks}: invalid pixels of temporal float modalities set to NaN (timeless ones kept); "
                "windows over max_invalid filtered"
            )
        for item in items:
            item.info.update(masks=masks, chosen=chosen, size=size)
        return ImportPlan(
            modalities=modalities,
            items=items,
            extra_arrays=extra,
            capacity=max(capacity, 1),
            targets=targets,
            dates=Dates(group="location_id", time="time") if temporal else None,
            notes=notes,
        )

    @staticmethod
    def _classes(values: list[int], options: EOPatchOptions, label: str) -> tuple[list[int], tuple[str, ...]]:
        """A look-up table raw value -> class id, and the class names."""
        if values and min(values) < 0:
            raise ImportDataError(f"label {label}: negative class values {values}")
        if options.class_names is not None:
            if values and max(values) >= len(options.class_names):
                raise ConfigError(f"class_names: {len(options.class_names)} names, but {label} holds values {values}")
            return list(range(len(options.class_names))), tuple(options.class_names)
        lut = [-1] * (max(values, default=0) + 1)
        for i, value in enumerate(values):
            lut[value] = i
        return lut, tuple(str(v) for v in values)

    def read(self, item: ImportItem, options: EOPatchOptions) -> list[Sample | Filtered]:
        info = item.info
        if "error" in info:
            raise ImportDataError(info["error"])
        patch = Path(info["patch"])
        arrays = {k: load_array(Path(info["files"][k])) for k in info["keys"]}
        height, width = arrays[info["keys"][0]].shape[-3:-1]
        temporal = [k for k in info["chosen"] if k.split("/")[0] in TEMPORAL]
        stamps = read_timestamps(patch) if temporal else []
        for key, values in arrays.items():
            timed = key.split("/")[0] in TEMPORAL
            if values.ndim != (4 if timed else 3) or values.shape[-3:-1] != (height, width):
                raise ImportDataError(
                    f"'{info['files'][key]}': shape {values.shape}, expected "
                    f"{'(time, ' if timed else '('}{height}, {width}, channels)"
                )
            if timed and len(values) != len(stamps):
                raise ImportDataError(
                    f"'{info['files'][key]}': {len(values)} dates, but timestamps.json lists {len(stamps)}"
                )
        invalid = np.zeros((max(len(stamps), 1), height, width), bool)
        for role, key in info["masks"].items():  # temporal (t, h, w, 1) or timeless (h, w, 1), broadcast over dates
            mask = arrays[key][..., 0] != 0
            invalid |= mask if role == "invalid" else ~mask
        bbox = read_bbox(patch)
        out: list[Sample | Filtered] = []
        windows = _windows(height, width, info["size"], options.stride)
        if not windows:
            return [Filtered(item.key, f"patch smaller than patch_size {info['size']}")]
        for row, col, h, w in windows:
            window = (slice(row, row + h), slice(col, col + w))
            place = patch.name if info["size"] is None else f"{patch.name}_{row:04d}_{col:04d}"
            lat, lon = self._lat_lon(bbox, (height, width), row + h / 2, col + w / 2)
            for t in _pick(len(stamps), options.dates) if temporal else [None]:
                bad = invalid[(t or 0, *window)]
                sample = self._sample(arrays, info, window, t, bad)
                key = place if t is None else f"{place}_{t:03d}"
                checked = [info["chosen"][k] for k in temporal] or list(info["chosen"].values())
                share = max(
                    [float(bad.mean()) if info["masks"] else 0.0] + [invalid_share(sample[m], None) for m in checked]
                )
                if share > options.max_invalid or share >= 1.0:
                    out.append(Filtered(key, INVALID))
                    continue
                meta = {"location_id": place, "tile": patch.name, "lat": lat, "lon": lon}
                meta.update(patch_row=row, patch_col=col)
                if t is not None:
                    meta.update(time=stamps[t], date_index=t)
                out.append(Sample(key, sample, meta))
        return out

    @staticmethod
    def _sample(
        arrays: dict[str, np.ndarray], info: dict[str, Any], window: tuple[slice, slice], t: int | None, bad: np.ndarray
    ) -> dict[str, np.ndarray]:
        """One window and date: modalities ``[C, h, w]`` (temporal floats NaN where ``bad``), label ``[1, h, w]``."""
        out = {}
        for key, name in info["chosen"].items():
            timed = key.split("/")[0] in TEMPORAL
            values = np.moveaxis(arrays[key][(t, *window)] if timed else arrays[key][window], -1, 0)
            if np.issubdtype(values.dtype, np.floating):
                values = values.astype(np.float32, copy=True)
                if timed:
                    values[:, bad] = np.nan
            out[name] = values
        if "label" in info:
            raw = arrays[info["label"]][(*window, 0)].astype(np.int64)
            lut = np.asarray(info["lut"])
            if raw.min() < 0 or raw.max() >= len(lut) or (lut[raw] < 0).any():
                raise ImportDataError(f"'{info['files'][info['label']]}': label values outside those planned")
            out[info["target"]] = lut[raw][None]
        return out

    @staticmethod
    def _lat_lon(bbox: Any, shape: tuple[int, int], row: float, col: float) -> tuple[float, float]:
        if bbox is None:
            return float("nan"), float("nan")
        from rasterio.warp import transform as warp_transform

        crs, (minx, miny, maxx, maxy) = bbox
        x = minx + col * (maxx - minx) / shape[1]
        y = maxy - row * (maxy - miny) / shape[0]
        lon, lat = warp_transform(crs, "EPSG:4326", [x], [y])
        return float(lat[0]), float(lon[0])
