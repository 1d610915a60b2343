"""Fake hyperspectral .mat scenes in the real layout: ``Indian_pines_corrected.mat`` (key
``indian_pines_corrected``, H x W x bands uint16) with ``Indian_pines_gt.mat`` (key ``indian_pines_gt``,
uint8, 0 = unlabelled), ``PaviaU.mat``/``PaviaU_gt.mat`` likewise, written with ``scipy.io.savemat``; and a
MATLAB v7.3 look-alike (HDF5 signature after the 128-byte MATLAB header and padding)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.io import savemat

from eossl.data.importers.hyperspectral_mat import HDF5_SIGNATURE, SCENES


def cube_values(size: int, bands: int) -> np.ndarray:
    """``size x size x bands`` uint16 whose value tells its place: ``row * 1000 + col * 10 + band % 10``."""
    r, c, b = np.meshgrid(np.arange(size), np.arange(size), np.arange(bands), indexing="ij")
    return (r * 1000 + c * 10 + b % 10).astype(np.uint16)


def ground_truth(size: int, block: int, classes: int = 4) -> np.ndarray:
    """Class ``1 + (block_row + block_col) % classes`` on two pixels in three, 0 (unlabelled) elsewhere."""
    r, c = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    labels = 1 + ((r // block + c // block) % classes)
    return np.where((r + c) % 3 != 0, labels, 0).astype(np.uint8)


def write_scene(folder: Path, scene: str = "indian-pines", size: int = 24, bands: int = 12, block: int = 6) -> Path:
    """The cube and ground-truth files of ``scene`` in ``folder``; returns the folder."""
    spec = SCENES[scene]
    folder.mkdir(parents=True, exist_ok=True)
    savemat(folder / spec.cube_file, {spec.cube_key: cube_values(size, bands)})
    savemat(folder / spec.gt_file, {spec.gt_key: ground_truth(size, block)})
    return folder


def write_v73(path: Path) -> Path:
    """A file that starts like a MATLAB v7.3 (HDF5) .mat file."""
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header.ljust(512, b" ") + HDF5_SIGNATURE + bytes(64))
    return path
