"""Disjoint spatial blocks for the splits of a single labelled scene: every class gets training blocks,
and a patch whose window crosses into a block of another split is left out, so no test pixel is seen
in training (the leakage of random pixel splits)."""

from __future__ import annotations

import math

import numpy as np

IGNORE = 255
"""The label of unlabelled pixels."""
SPLITS = ("train", "val", "test")


def assign_blocks(
    labels: np.ndarray, block: int, shares: dict[str, float], seed: int, num_classes: int, half: int = 0
) -> tuple[np.ndarray, list[str]]:
    """``[rows, cols]`` block grid of split ids (0 train, 1 val, 2 test, -1 no labels) and notes.

    ``labels``: class ids 0..C-1, ``IGNORE`` for unlabelled pixels. The blocks that give each class to
    train (and test) are drawn first among those holding pixels of it whose ``half``-window stays inside
    the block (their patches cannot cross into another split).
    """
    height, width = labels.shape
    grid_shape = (math.ceil(height / block), math.ceil(width / block))
    counts = np.zeros((grid_shape[0] * grid_shape[1], num_classes), np.int64)
    rows, cols = np.nonzero(labels != IGNORE)
    ids = (rows // block) * grid_shape[1] + cols // block
    np.add.at(counts, (ids, labels[rows, cols].astype(np.int64)), 1)
    inside = np.zeros_like(counts)
    keep = ((np.maximum(rows - half, 0) // block == rows // block)
            & (np.minimum(rows + half, height - 1) // block == rows // block)
            & (np.maximum(cols - half, 0) // block == cols // block)
            & (np.minimum(cols + half, width - 1) // block == cols // block))  # fmt: skip
    np.add.at(inside, (ids[keep], labels[rows[keep], cols[keep]].astype(np.int64)), 1)
    order = [int(b) for b in np.random.default_rng(seed).permutation(np.flatnonzero(counts.sum(1) > 0))]
    split = np.full(len(counts), -1)
    present = [c for c in range(num_classes) if counts[:, c].sum() > 0]
    rarest = sorted(present, key=lambda c: (int((counts[:, c] > 0).sum()), c))
    total = counts.sum()
    targets = np.array([shares[s] for s in SPLITS]) * total
    for which in (0, 2):  # one block per class to train (always), then to test (within its share)
        for c in rarest:
            if (counts[split == which, c] > 0).any():
                continue
            room = np.inf if which == 0 else targets[2] - counts[split == 2].sum()
            free = [b for b in order if split[b] == -1 and counts[b, c] > 0 and counts[b].sum() <= room]
            free = [b for b in free if inside[b, c] > 0] or free
            if free:
                split[free[0]] = which
    for b in order:
        if split[b] == -1:
            have = np.array([counts[split == i].sum() for i in range(3)])
            split[b] = int(np.argmax(targets - have))
    notes = []
    for i, name in enumerate(SPLITS):
        pixels = int(counts[split == i].sum())
        notes.append(f"{name}: {int((split == i).sum())} blocks, {pixels} labelled pixels ({pixels / total:.1%})")
    return split.reshape(grid_shape), notes


def crosses(grid: np.ndarray, block: int, r: int, c: int, half: int, shape: tuple[int, int]) -> bool:
    """Whether the window around ``(r, c)`` reaches into a block of another split than its centre's."""
    own = grid[r // block, c // block]
    r0, r1 = max(r - half, 0) // block, min(r + half, shape[0] - 1) // block
    c0, c1 = max(c - half, 0) // block, min(c + half, shape[1] - 1) // block
    window = grid[r0 : r1 + 1, c0 : c1 + 1]
    return bool(((window != own) & (window != -1)).any())
