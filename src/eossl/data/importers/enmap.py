"""EnMAP hyperspectral patches: SpectralEarth (Braham et al. 2024) and raw EnMAP L2A products.

Layouts read (checked against a public SpectralEarth loader, ``SpectralEarthDataset``, which reads
``root/enmap/<patch_id>/<tile_id>.tif``; TorchGeo's ``EnMAP`` dataset for the product names and the
202-band subset; EnMAP-Box's reader for the XML; TorchGeo has no SpectralEarth dataset)::

    SpectralEarth:  SOURCE/enmap/<patch id>/<tile id>.tif      128 x 128 px, 202 bands, int16
                    (a patch-id folder holds the acquisitions of one place, one GeoTIFF per EnMAP tile/date)
    raw L2A:        SOURCE/.../ENMAP01-____L2A-DT<datatake>_<YYYYMMDDTHHMMSS>Z_<tile>_V<version>_<date>Z
                        -SPECTRAL_IMAGE.TIF
                    (224 bands, int16 surface reflectance x 10000, nodata -32768) beside its -METADATA.XML

``SOURCE`` may also be the ``enmap`` folder, a folder of GeoTIFFs, one product folder or one file.
Wavelengths come from the product's ``METADATA.XML`` where there is one
(``level_X/specific/bandCharacterisation/bandID[@number]/wavelengthCenterOfBand``, with ``GainOfBand`` and
``OffsetOfBand`` giving the scale when they are the same for every band); the XML is parsed with
:mod:`xml.etree` (nothing in it is executed). Otherwise they are EnMAP's nominal centre wavelengths (DLR's
EnMAP spectral band table; the ``enmap-l2a`` preset's evenly spaced values are off by up to ~200 nm in the
SWIR, so they are not used here): all 224 bands, or for 202-band files SpectralEarth's subset, EnMAP bands
1-126, 142-160 and 168-224 (bands 127-141, ~1295-1519 nm, and 161-167, ~1739-1968 nm, in the water-vapour
absorption are removed; SpectralEarth, arXiv:2408.08447, and TorchGeo's ``EnMAP.default_bands``). The
band names keep EnMAP's band numbers (``B001``..``B224``), so a 202-band store says which bands it holds.

Files larger than ``patch_size`` are cut into patches (every ``stride``); patches with more than
``max_invalid`` of their values nodata/NaN are filtered. The store holds one modality ``hsi`` (optical,
the files' dtype and nodata). Rows: ``location_id`` (the SpectralEarth patch id, with the window for cut
files; for raw products the product and window), ``time`` (from a ``YYYYMMDDTHHMMSS`` date in the name),
``tile`` (the file stem), ``lat``/``lon`` of the patch centre. Places with several acquisitions are
declared as dates (``location_id``, ``time``). There is no official split (split by place).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from eossl.data.importers._base import IMPORTERS, Filtered, Importer, ImporterOptions, ImportItem, ImportPlan, Sample
from eossl.data.importers.raster import invalid_share, open_raster, patch_grid
from eossl.data.modality import Modality
from eossl.data.sensors import ENMAP_NOMINAL_NM, sensor_modality
from eossl.data.targets import Dates
from eossl.errors import ImportDataError

SPECTRALEARTH_BANDS: tuple[int, ...] = (*range(1, 127), *range(142, 161), *range(168, 225))
"""EnMAP band numbers (1-based) of SpectralEarth's 202-band patches."""
PATCHES_PER_ITEM = 8
DATE = re.compile(r"(\d{4})(\d{2})(\d{2})T\d{6}")


class EnMAPOptions(ImporterOptions):
    """Patch size, stride and the nodata share above which a patch is left out."""

    patch_size: int = Field(128, ge=1, description="patch side in pixels (SpectralEarth patches are 128)")
    stride: int | None = Field(None, ge=1, description="step between patches of larger files (default: patch_size)")
    max_invalid: float = Field(0.5, ge=0, le=1, description="largest share of nodata/NaN values a patch may have")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_band_metadata(xml: Path) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """Centre wavelengths, gains and offsets by band number from an EnMAP ``METADATA.XML``."""
    try:
        root = ET.parse(xml).getroot()
    except (ET.ParseError, OSError) as exc:
        raise ImportDataError(f"'{xml}': not a readable XML file ({exc})") from None
    characterisation = next((e for e in root.iter() if _local(e.tag) == "bandCharacterisation"), None)
    if characterisation is None:
        raise ImportDataError(f"'{xml}': no <bandCharacterisation> element (expected in EnMAP METADATA.XML)")
    bands: dict[int, tuple[float, float, float]] = {}
    for band in (e for e in characterisation if _local(e.tag) == "bandID"):
        fields = {_local(e.tag): (e.text or "").strip() for e in band}
        number = band.get("number", "?")
        try:
            values = (float(fields["wavelengthCenterOfBand"]), float(fields.get("GainOfBand", "nan")),
                      float(fields.get("OffsetOfBand", "0") or 0))  # fmt: skip
            bands[int(number)] = values
        except (KeyError, ValueError):
            raise ImportDataError(
                f"'{xml}': bandID {number}: expected a number in <wavelengthCenterOfBand>, got "
                f"{fields.get('wavelengthCenterOfBand')!r}"
            ) from None
    if sorted(bands) != list(range(1, len(bands) + 1)):
        raise ImportDataError(f"'{xml}': bandID numbers are not 1..{len(bands)}")
    ordered = [bands[n] for n in range(1, len(bands) + 1)]
    return tuple(tuple(v[i] for v in ordered) for i in range(3))  # type: ignore[return-value]


def _metadata_xml(image: Path) -> Path | None:
    """The ``-METADATA.XML`` beside a ``-SPECTRAL_IMAGE`` file, if any."""
    prefix = re.split(r"-?SPECTRAL_IMAGE", image.name, flags=re.IGNORECASE)[0]
    for candidate in sorted(image.parent.iterdir()):
        if candidate.name.upper().startswith(prefix.upper()) and candidate.name.upper().endswith("METADATA.XML"):
            return candidate
    return None


def _files(source: Path) -> tuple[str, list[tuple[Path, str]]]:
    """``("raw" | "patches", [(file, place), ...])`` for the layout under ``source``."""
    is_image = re.compile(r"SPECTRAL_IMAGE.*\.tiff?$", re.IGNORECASE)
    if source.is_file():
        raw = bool(is_image.search(source.name))
        return ("raw" if raw else "patches"), [(source, _product(source) if raw else source.stem)]
    raw_files = sorted(p for p in source.rglob("*") if p.is_file() and is_image.search(p.name))
    if raw_files:
        return "raw", [(p, _product(p)) for p in raw_files]
    root = source / "enmap" if (source / "enmap").is_dir() else source
    tifs = [(p, p.parent.name) for p in sorted(root.glob("*/*.tif*"))]
    tifs += [(p, p.stem) for p in sorted(root.glob("*.tif*")) if p.is_file()]
    if not tifs:
        raise ImportDataError(
            f"'{source}': no EnMAP data found: expected SpectralEarth patches (enmap/<patch id>/<tile id>.tif) "
            "or EnMAP L2A products (*-SPECTRAL_IMAGE.TIF)"
        )
    return "patches", tifs


def _product(image: Path) -> str:
    return re.split(r"-?SPECTRAL_IMAGE", image.name, flags=re.IGNORECASE)[0] or image.parent.name


def _when(path: Path) -> str | None:
    match = DATE.search(path.name) or DATE.search(path.parent.name)
    return f"{match.group(1)}-{match.group(2)}-{match.group(3)}" if match else None


@IMPORTERS.register("enmap")
class EnMAP(Importer):
    """SpectralEarth patches or EnMAP L2A products -> a store with the hyperspectral modality ``hsi``."""

    config = EnMAPOptions

    def plan(self, source: Path, options: EnMAPOptions) -> ImportPlan:
        mode, files = _files(source)
        with open_raster(files[0][0]) as src:
            count, dtype, nodata = src.count, src.dtypes[0], src.nodata
        notes: list[str] = []
        modality = self._modality(mode, files, count, dtype, nodata, notes)
        items, places, size, stride = [], {}, options.patch_size, options.stride or options.patch_size
        shape = None
        for path, place in files:
            if shape is None or mode == "raw":  # SpectralEarth's many files: the first one's size, checked on read
                with open_raster(path) as src:
                    shape = (src.height, src.width)
            patches = [(p.row, p.col) for p in patch_grid(*shape, size, stride)]
            places.setdefault(place, set()).add(path)
            info: dict[str, Any] = {"place": place, "cut": shape != (size, size), "time": _when(path), "shape": shape,
                                    "bands": count, "dtype": dtype, "nodata": modality.nodata,
                                    "tile": place if mode == "raw" else path.stem}  # fmt: skip
            chunks = [patches[i : i + PATCHES_PER_ITEM] for i in range(0, len(patches), PATCHES_PER_ITEM)] or [[]]
            for n, chunk in enumerate(chunks):
                key = f"{place}/{path.stem}" + (f"#{n}" if len(chunks) > 1 else "")
                items.append(ImportItem(key, (path,), {**info, "patches": chunk}))
        repeated = sum(len(p) > 1 for p in places.values())
        timed = any(i.info["time"] for i in items)
        notes.append(f"{len(files)} files of {len(places)} places ({mode}); {repeated} places with several dates")
        return ImportPlan(
            modalities={"hsi": modality},
            items=items,
            capacity=max(1, sum(len(i.info["patches"]) for i in items)),
            dates=Dates("location_id", "time" if timed else None) if repeated else None,
            attrs={"layout": mode},
            notes=notes,
        )

    def _modality(
        self, mode: str, files: list[tuple[Path, str]], count: int, dtype: str, nodata: float | None, notes: list[str]
    ) -> Modality:
        """The ``hsi`` modality: band numbers, wavelengths (XML or nominal), scale and nodata."""
        preset = sensor_modality("enmap-l2a")
        xml = _metadata_xml(files[0][0]) if mode == "raw" else None
        scale, offset = preset.scale, preset.offset
        if xml is not None:
            wavelengths, gains, offsets = read_band_metadata(xml)
            if len(wavelengths) != count:
                raise ImportDataError(f"'{xml}' describes {len(wavelengths)} bands, '{files[0][0]}' has {count}")
            numbers = tuple(range(1, count + 1))
            notes.append(f"wavelengths from '{xml.name}'")
            if len(set(gains)) == 1 and len(set(offsets)) == 1 and gains[0] > 0:
                scale, offset = 1.0 / gains[0], offsets[0] / gains[0]
                notes.append(f"scale from GainOfBand {gains[0]:g}, OffsetOfBand {offsets[0]:g}")
            others = [read_band_metadata(x)[0] for x in (_metadata_xml(p) for p, _ in files[1:]) if x is not None]
            spread = max(
                (float(np.abs(np.subtract(o, wavelengths)).max()) for o in others if len(o) == count), default=0
            )
            if spread:
                notes.append(f"other products' centre wavelengths differ by up to {spread:.2f} nm (first kept)")
        elif count == len(ENMAP_NOMINAL_NM):
            numbers, wavelengths = tuple(range(1, count + 1)), ENMAP_NOMINAL_NM
            notes.append("224 bands, no METADATA.XML: EnMAP nominal centre wavelengths")
        elif count == len(SPECTRALEARTH_BANDS):
            numbers = SPECTRALEARTH_BANDS
            wavelengths = tuple(ENMAP_NOMINAL_NM[n - 1] for n in numbers)
            notes.append("202 bands: SpectralEarth's subset (EnMAP bands 1-126, 142-160, 168-224), nominal wavelengths")
        else:
            raise ImportDataError(
                f"'{files[0][0]}': {count} bands; expected 224 (EnMAP L2A) or 202 (SpectralEarth), or an EnMAP "
                "METADATA.XML beside the file describing its bands"
            )
        if nodata is None and np.issubdtype(np.dtype(dtype), np.integer):
            nodata = preset.nodata
            notes.append(f"the files declare no nodata: EnMAP's {nodata} assumed")
        return replace(
            preset,
            bands=tuple(f"B{n:03d}" for n in numbers),
            dtype=dtype,
            gsd_m=(30.0,) * count,
            wavelengths_nm=tuple(float(w) for w in wavelengths),
            scale=scale,
            offset=offset,
            nodata=None if nodata is None or np.isnan(nodata) else nodata,
            product="L2A" if mode == "raw" else "L2A (SpectralEarth)",
        )

    def read(self, item: ImportItem, options: EnMAPOptions) -> list[Sample | Filtered]:
        from rasterio.errors import RasterioError
        from rasterio.warp import transform as warp_transform
        from rasterio.windows import Window

        (path,) = item.files
        info, size = item.info, options.patch_size
        out: list[Sample | Filtered] = []
        with open_raster(path) as src:
            found = (src.count, src.dtypes[0], src.height, src.width)
            if found != (info["bands"], info["dtype"], *info["shape"]):
                raise ImportDataError(
                    f"'{path}': {found[0]} bands of {found[1]}, {found[2]} x {found[3]} px; expected "
                    f"{info['bands']} of {info['dtype']}, {info['shape'][0]} x {info['shape'][1]} (like the first file)"
                )
            if not info["patches"]:
                return [Filtered(item.key, f"smaller than patch_size {size} ({src.height} x {src.width})")]
            nodata = info["nodata"]
            for r, c in info["patches"]:
                key = f"{info['place']}/{path.stem}" + (f"_r{r}_c{c}" if info["cut"] else "")
                try:
                    values = src.read(window=Window(c, r, size, size))
                except RasterioError as exc:
                    raise ImportDataError(
                        f"'{path}': cannot read its pixels ({exc}); the file may be truncated"
                    ) from None
                share = invalid_share(values, nodata)
                if share > options.max_invalid or share == 1.0:
                    out.append(Filtered(key, f"over max_invalid={options.max_invalid} nodata/NaN"))
                    continue
                lat = lon = float("nan")
                if src.crs is not None:
                    x, y = src.transform @ (c + size / 2, r + size / 2)
                    lons, lats = warp_transform(src.crs, "EPSG:4326", [x], [y])
                    lat, lon = float(lats[0]), float(lons[0])
                place = info["place"] + (f"_r{r}_c{c}" if info["cut"] else "")
                row = {"location_id": place, "time": info["time"], "tile": info["tile"], "lat": lat, "lon": lon}
                out.append(Sample(key, {"hsi": values}, row))
        return out
