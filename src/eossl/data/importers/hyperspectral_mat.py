"""The classic airborne hyperspectral scenes as MATLAB ``.mat`` files, cut into patches around labelled
pixels with a *spatially disjoint* train/val/test split.

Scenes and their real files (the Grupo de Inteligencia Computacional (EHU) distribution)::

    Indian_pines_corrected.mat  key indian_pines_corrected  145 x 145 x 200  Indian_pines_gt.mat  indian_pines_gt
    PaviaU.mat                  key paviaU                  610 x 340 x 103  PaviaU_gt.mat        paviaU_gt
    Salinas_corrected.mat       key salinas_corrected       512 x 217 x 204  Salinas_gt.mat       salinas_gt
    KSC.mat                     key KSC                     512 x 614 x 176  KSC_gt.mat           KSC_gt

Cubes are ``H x W x bands`` (integers as distributed, no physical scale is given with them), ground
truth ``H x W`` class ids with 0 = unlabelled. ``SOURCE`` is a folder or the cube's ``.mat``; the scene is
found from the variable names in the files (``scene=auto``) or given. MATLAB v7.3 files are HDF5, which
scipy cannot read: they are refused with a clear error (h5py is not a dependency).

Sensors: AVIRIS (Indian Pines 20 m, Salinas 3.7 m, KSC 18 m) and ROSIS (Pavia University 1.3 m). The
wavelengths are approximate: Indian Pines = 220 channels evenly over 400-2500 nm less the water-absorption
bands 104-108, 150-163 and 220; Salinas = 224 AVIRIS channels over 400-2500 nm less 108-112, 154-167 and
224; Pavia University = 103 channels evenly over 430-860 nm (which 12 noisy ROSIS bands were dropped is not
published); KSC: none (which 48 of the 224 AVIRIS bands were dropped is not published).

Patches (``patch_size`` odd, default 9) are centred on labelled pixels, reflect-padded at the borders. The
store holds ``hsi`` (the cube's bands ``B001..``) and two targets: ``land_cover`` (single-label, the centre
pixel's class, 0..C-1 after dropping "unlabelled") and ``land_cover_map`` (segmentation of the window,
ignore 255 for unlabelled pixels and pixels outside the scene).

Split (random pixel splits leak: a test pixel's neighbours, or the pixel itself, sit in training windows):
the scene is cut into ``block_size`` blocks; blocks holding labels are assigned to train/val/test by a
seeded shuffle: first one block per class to train (preferring blocks where some of its pixels lie
``patch_size // 2`` inside the block), then one per class to test while the test share allows, then the
rest by labelled-pixel share towards ``train``/``val``/``test``; classes a split lacks are in the notes.
A patch belongs to its centre's block; a patch whose window reaches into a block of another split is
left out (filtered, counted), so no pixel of a test block lies in a training window. Blocks without
labels belong to no split. ``split`` is the store's official split column, ``location_id`` the block.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from eossl.data.importers._base import IMPORTERS, Filtered, Importer, ImporterOptions, ImportItem, ImportPlan, Sample
from eossl.data.importers._hsi_blocks import IGNORE, SPLITS, assign_blocks, crosses
from eossl.data.importers._hsi_scenes import SCENES, Scene
from eossl.data.modality import Modality
from eossl.data.targets import Target
from eossl.errors import ImportDataError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class HyperspectralMatOptions(ImporterOptions):
    """Scene, patch and block sizes, split fractions and a per-class cap."""

    scene: Literal["auto", "indian-pines", "pavia-u", "salinas", "ksc"] = Field(
        "auto", description="auto: found from the variable names in the .mat files"
    )
    patch_size: int = Field(9, ge=1, description="patch side in pixels (odd), centred on a labelled pixel")
    block_size: int = Field(32, ge=1, description="side of the square blocks assigned to train/val/test")
    train: float = Field(0.6, gt=0, le=1, description="share of labelled pixels (by block) for training")
    val: float = Field(0.2, ge=0, le=1, description="share of labelled pixels (by block) for validation")
    test: float = Field(0.2, ge=0, le=1, description="share of labelled pixels (by block) for testing")
    seed: int = Field(0, description="seed of the block shuffle and of the per-class sampling")
    max_per_class: int | None = Field(None, ge=1, description="at most this many patches per class and split")

    @field_validator("patch_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"patch_size must be odd (a patch is centred on its pixel), got {value}")
        return value

    @model_validator(mode="after")
    def _fractions(self) -> HyperspectralMatOptions:
        if abs(self.train + self.val + self.test - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1, got {self.train} + {self.val} + {self.test}")
        return self


def check_not_hdf5(path: Path) -> None:
    """Refuse MATLAB v7.3 (HDF5) files, which scipy cannot read, naming the file."""
    try:
        with open(path, "rb") as f:
            head = f.read(1024)
    except OSError as exc:
        raise ImportDataError(f"'{path}': cannot read the file ({exc})") from None
    if head[:8] == HDF5_SIGNATURE or head[512:520] == HDF5_SIGNATURE or b"MATLAB 7.3" in head[:128]:
        raise ImportDataError(
            f"'{path}': a MATLAB v7.3 (HDF5) file; reading it needs h5py, which is not installed. Save it in "
            "MATLAB as v7 (save(..., '-v7')) or install h5py and convert it"
        )


def _variables(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Variable name -> (shape, MATLAB class) of a .mat file, without reading its values."""
    from scipy.io import whosmat

    check_not_hdf5(path)
    try:
        return {name: (tuple(shape), cls) for name, shape, cls in whosmat(str(path))}
    except Exception as exc:  # scipy raises ValueError, TypeError, OSError on non-.mat input
        raise ImportDataError(f"'{path}': not a readable MATLAB .mat file ({type(exc).__name__}: {exc})") from None


def load_variable(path: Path, key: str) -> np.ndarray:
    """One variable of a .mat file; errors name the file and the key."""
    from scipy.io import loadmat

    check_not_hdf5(path)
    try:
        data = loadmat(str(path), variable_names=[key])
    except Exception as exc:
        raise ImportDataError(f"'{path}': cannot read key '{key}' ({type(exc).__name__}: {exc})") from None
    if key not in data:
        raise ImportDataError(f"'{path}': no variable '{key}' in the file")
    return np.asarray(data[key])


def _find(source: Path, options: HyperspectralMatOptions) -> tuple[Scene, Path, Path]:
    """The scene and its cube and ground-truth files."""
    folder = source.parent if source.is_file() else source
    files = sorted(folder.glob("*.mat"))
    if source.is_file():
        files = [source, *[f for f in files if f != source]]
    found: dict[str, dict[str, Path]] = {}
    known = {name for scene in SCENES.values() for name in (scene.cube_file, scene.gt_file)}
    for path in files:
        try:
            variables = _variables(path)
        except ImportDataError:
            if path == source or path.name in known:
                raise
            continue  # another .mat file in the folder that cannot be read: not one of the scenes
        for scene in SCENES.values():
            for role, key in (("cube", scene.cube_key), ("gt", scene.gt_key)):
                if key in variables:
                    found.setdefault(scene.name, {}).setdefault(role, path)
    with_cube = [name for name, roles in found.items() if "cube" in roles]
    if options.scene == "auto":
        if not with_cube:
            known = ", ".join(f"{s.cube_file} ({s.cube_key})" for s in SCENES.values())
            raise ImportDataError(f"'{source}': no hyperspectral cube found; expected one of {known}")
        if len(with_cube) > 1:
            raise ImportDataError(f"'{source}': several scenes ({', '.join(with_cube)}); choose one with scene=...")
        name = with_cube[0]
    else:
        name = options.scene
    scene = SCENES[name]
    roles = found.get(name, {})
    if "cube" not in roles:
        raise ImportDataError(f"'{source}': no variable '{scene.cube_key}' ({scene.name} cube, {scene.cube_file})")
    if "gt" not in roles:
        raise ImportDataError(f"'{folder}': no ground truth '{scene.gt_key}' ({scene.gt_file}) for {scene.name}")
    return scene, roles["cube"], roles["gt"]


def _stamp(*paths: Path) -> tuple[tuple[int, int], ...]:
    return tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in paths)


@lru_cache(maxsize=2)
def _padded(cube: Path, key: str, gt: Path, gt_key: str, half: int, stamp: tuple) -> tuple[np.ndarray, np.ndarray]:
    """The cube ``[B, H + 2h, W + 2h]`` reflect-padded and the label map padded with ``IGNORE`` (cached per
    worker; ``stamp``, the files' modification times and sizes, keeps a rewritten file from being served)."""
    values = load_variable(cube, key)
    labels = load_variable(gt, gt_key).astype(np.int64)
    data = np.moveaxis(values, -1, 0)
    if data.dtype == np.float64:
        data = data.astype(np.float32)
    data = np.pad(data, ((0, 0), (half, half), (half, half)), mode="reflect")
    mapped = np.where(labels > 0, labels - 1, IGNORE).astype(np.uint8)
    return np.ascontiguousarray(data), np.pad(mapped, half, constant_values=IGNORE)


@IMPORTERS.register("hyperspectral-mat")
class HyperspectralMat(Importer):
    """Indian Pines, Pavia University, Salinas, KSC -> ``hsi`` patches, ``land_cover`` and ``land_cover_map``."""

    config = HyperspectralMatOptions

    def plan(self, source: Path, options: HyperspectralMatOptions) -> ImportPlan:
        scene, cube_path, gt_path = _find(source, options)
        shape, mat_class = _variables(cube_path)[scene.cube_key]
        if len(shape) != 3:
            raise ImportDataError(f"'{cube_path}': '{scene.cube_key}' has shape {shape}, expected H x W x bands")
        gt = load_variable(gt_path, scene.gt_key)
        if gt.shape != shape[:2]:
            raise ImportDataError(
                f"'{gt_path}': '{scene.gt_key}' is {gt.shape[0]} x {gt.shape[1]} but the cube '{cube_path}' is "
                f"{shape[0]} x {shape[1]}"
            )
        num_classes = len(scene.classes)
        if not np.issubdtype(gt.dtype, np.integer) or gt.min() < 0 or gt.max() > num_classes:
            raise ImportDataError(
                f"'{gt_path}': '{scene.gt_key}' must hold class ids 0..{num_classes} (0 = unlabelled) for "
                f"{scene.name}, got {gt.dtype} values {gt.min()}..{gt.max()}"
            )
        half = options.patch_size // 2
        if half >= min(shape[:2]):
            raise ImportDataError(f"'{cube_path}': patch_size {options.patch_size} does not fit a {shape[:2]} scene")
        labels = np.where(gt > 0, gt - 1, IGNORE)
        shares = {"train": options.train, "val": options.val, "test": options.test}
        grid, notes = assign_blocks(labels, options.block_size, shares, options.seed, num_classes, half)
        items, notes = self._items(scene, cube_path, gt_path, labels, grid, options, notes)
        dtype = _stored_dtype(cube_path, scene.cube_key, mat_class)
        wavelengths = scene.wavelengths_nm
        if wavelengths is not None and len(wavelengths) != shape[2]:
            notes.append(
                f"{scene.name} has {scene.bands} bands as distributed; this cube has {shape[2]}: no wavelengths"
            )
            wavelengths = None
        modality = Modality(
            name="hsi",
            kind="optical",
            bands=tuple(f"B{i + 1:03d}" for i in range(shape[2])),
            dtype=dtype,
            gsd_m=(scene.gsd_m,) * shape[2],
            wavelengths_nm=wavelengths,
            units="digital numbers as distributed (no physical scale given)",
            product=f"{scene.sensor} {scene.name}",
        )
        notes.insert(0, f"{scene.name}: {scene.sensor}; wavelengths approximate (see the importer's docstring)")
        patch = options.patch_size
        return ImportPlan(
            modalities={"hsi": modality},
            items=items,
            extra_arrays={"land_cover_map": ((1, patch, patch), "uint8")},
            capacity=max(1, sum(len(i.info["centres"]) for i in items)),
            targets=[
                Target("land_cover", "single-label", column="land_cover", class_names=scene.classes),
                Target(
                    "land_cover_map",
                    "segmentation",
                    array="land_cover_map",
                    class_names=scene.classes,
                    ignore_index=IGNORE,
                    strata="land_cover",
                ),
            ],
            split="split",
            attrs={"scene": scene.name, "block_size": options.block_size},
            notes=notes,
        )

    def _items(
        self,
        scene: Scene,
        cube_path: Path,
        gt_path: Path,
        labels: np.ndarray,
        grid: np.ndarray,
        options: HyperspectralMatOptions,
        notes: list[str],
    ) -> tuple[list[ImportItem], list[str]]:
        """One item per block with labelled pixels: the centres kept and those whose window crosses."""
        half, block = options.patch_size // 2, options.block_size
        keep: dict[tuple[int, int], list[list[int]]] = {}
        crossing: dict[tuple[int, int], list[list[int]]] = {}
        for r, c in zip(*np.nonzero(labels != IGNORE), strict=True):
            where = crossing if crosses(grid, block, int(r), int(c), half, labels.shape) else keep
            where.setdefault((int(r) // block, int(c) // block), []).append([int(r), int(c), int(labels[r, c])])
        drop: set[tuple[tuple[int, int], int]] = set()
        if options.max_per_class is not None:
            rng = np.random.default_rng(options.seed)
            pools: dict[tuple[int, int], list[tuple[tuple[int, int], int]]] = {}
            for b, centres in keep.items():
                for i, (_, _, cls) in enumerate(centres):
                    pools.setdefault((int(grid[b]), cls), []).append((b, i))
            for key in sorted(pools):
                pool, cap = pools[key], options.max_per_class
                if len(pool) > cap:
                    chosen = set(rng.choice(len(pool), cap, replace=False).tolist())
                    drop |= {pool[i] for i in range(len(pool)) if i not in chosen}
            keep = {b: [x for i, x in enumerate(cs) if (b, i) not in drop] for b, cs in keep.items()}
        items = []
        for b in sorted(set(keep) | set(crossing)):
            info = {
                "centres": keep.get(b, []),
                "crossing": crossing.get(b, []),
                "split": SPLITS[grid[b]],
                "block": list(b),
                "scene": scene.name,
                "keys": (scene.cube_key, scene.gt_key),
            }
            items.append(ImportItem(f"{scene.name}_b{b[0]:03d}_{b[1]:03d}", (cube_path, gt_path), info))
        kept = {(grid[b], x[2]) for b, cs in keep.items() for x in cs}
        for s, name in enumerate(SPLITS):
            missing = [
                scene.classes[c] for c in range(len(scene.classes)) if (s, c) not in kept and (labels == c).any()
            ]
            if missing:
                notes.append(
                    f"{name} has no patch of {', '.join(missing)}"
                    + (
                        " (all such pixels are blocks of other splits or within patch_size // 2 of one: use a larger "
                        "block_size or a smaller patch_size)"
                        if name == "train"
                        else ""
                    )
                )
        notes.append(f"{sum(map(len, crossing.values()))} patches filtered: their window crosses into another split")
        if drop:
            notes.append(f"{len(drop)} patches left out by max_per_class={options.max_per_class}")
        return items, notes

    def read(self, item: ImportItem, options: HyperspectralMatOptions) -> list[Sample | Filtered]:
        cube_path, gt_path = item.files
        cube_key, gt_key = item.info["keys"]
        half, size = options.patch_size // 2, options.patch_size
        data, labels = _padded(cube_path, cube_key, gt_path, gt_key, half, _stamp(cube_path, gt_path))
        scene, (bi, bj) = item.info["scene"], item.info["block"]
        out: list[Sample | Filtered] = [
            Filtered(f"{scene}_r{r:04d}_c{c:04d}", "window crosses into a block of another split")
            for r, c, _ in item.info["crossing"]
        ]
        for r, c, label in item.info["centres"]:
            arrays = {
                "hsi": data[:, r : r + size, c : c + size].copy(),
                "land_cover_map": labels[None, r : r + size, c : c + size].copy(),
            }
            row = {
                "location_id": f"{scene}_b{bi:03d}_{bj:03d}",
                "split": item.info["split"],
                "land_cover": label,
                "row": r,
                "col": c,
                "scene": scene,
            }
            out.append(Sample(f"{scene}_r{r:04d}_c{c:04d}", arrays, row))
        return out


def _stored_dtype(path: Path, key: str, mat_class: str) -> str:
    """The cube's dtype (float64 stored as float32), read from the values' header."""
    names = {
        "uint8": "uint8",
        "int8": "int8",
        "uint16": "uint16",
        "int16": "int16",
        "uint32": "uint32",
        "int32": "int32",
        "single": "float32",
        "double": "float32",
    }
    if mat_class not in names:
        raise ImportDataError(f"'{path}': '{key}' is of MATLAB class '{mat_class}', expected a numeric cube")
    return names[mat_class]
