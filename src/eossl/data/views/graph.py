"""The overlap graph: tiles are nodes; an edge joins two dates of the same ground whose footprints
intersect by at least ``min_overlap_area``. Candidate pairs come from a spatial index (shapely's
``STRtree``, one bulk query), never from all pairs; areas are measured in the equal-area CRS.

Two passes closer than ``min_days_apart`` share no edge (one pass, e.g. neighbouring tiles of one
datatake); if their footprints also have an intersection-over-union of at least ``duplicate_iou`` the
later one (in tile order) is a duplicate and leaves the graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from eossl.data.views.options import ViewsOptions
from eossl.data.views.tiles import Tile


@dataclass
class OverlapGraph:
    """Edges ``(i, j)`` with ``i < j`` and their intersection areas (m²), adjacency, components.

    ``duplicates`` maps a dropped tile to the tile it duplicates; dropped tiles have no edges and no
    component (``component[i] == -1``).
    """

    num_tiles: int
    edges: np.ndarray  # [E, 2] int
    areas: np.ndarray  # [E] float, m²
    duplicates: dict[int, int] = field(default_factory=dict)
    component: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    neighbours: list[set[int]] = field(default_factory=list)

    @property
    def degree(self) -> np.ndarray:
        """Edges per tile."""
        return np.array([len(n) for n in self.neighbours], int)

    def components(self) -> list[list[int]]:
        """Tile indices of each connected component (duplicates left out), in order of their first tile."""
        groups: dict[int, list[int]] = {}
        for tile, label in enumerate(self.component):
            if label >= 0:
                groups.setdefault(int(label), []).append(tile)
        return list(groups.values())

    def edge_area(self, i: int, j: int) -> float:
        """The intersection area of an edge."""
        return self._area[(min(i, j), max(i, j))]

    def __post_init__(self) -> None:
        self._area = {(int(i), int(j)): float(a) for (i, j), a in zip(self.edges, self.areas, strict=True)}


def candidate_pairs(footprints: np.ndarray) -> np.ndarray:
    """``[P, 2]`` pairs ``i < j`` of intersecting footprints, from one bulk ``STRtree`` query."""
    tree = shapely.STRtree(footprints)
    left, right = tree.query(footprints, predicate="intersects")
    keep = left < right
    return np.column_stack([left[keep], right[keep]]).astype(int)


def overlap_graph(tiles: list[Tile], options: ViewsOptions, pairs: np.ndarray | None = None) -> OverlapGraph:
    """The overlap graph of ``tiles`` (see the module docstring). ``pairs``: candidate pairs found another
    way (the benchmark's all-pairs baseline); by default :func:`candidate_pairs`."""
    footprints = np.array([t.footprint for t in tiles], dtype=object)
    pairs = candidate_pairs(footprints) if pairs is None else pairs
    if len(pairs) == 0:
        pairs = np.zeros((0, 2), int)
    left, right = footprints[pairs[:, 0]], footprints[pairs[:, 1]]
    shared = shapely.area(shapely.intersection(left, right))
    union = shapely.area(left) + shapely.area(right) - shared
    seconds = np.array([t.time.value for t in tiles], dtype=np.int64) / 1e9
    gap_days = np.abs(seconds[pairs[:, 0]] - seconds[pairs[:, 1]]) / 86400.0
    same_pass = gap_days < options.min_days_apart
    duplicates: dict[int, int] = {}
    for (i, j), iou, one_pass in zip(pairs, shared / np.maximum(union, 1e-9), same_pass, strict=True):
        if one_pass and iou >= options.duplicate_iou and int(j) not in duplicates:
            duplicates[int(j)] = duplicates.get(int(i), int(i))
    min_area = minimum_area(tiles, options)
    keep = (shared >= min_area) & ~same_pass
    keep &= ~np.isin(pairs[:, 0], list(duplicates)) & ~np.isin(pairs[:, 1], list(duplicates))
    edges, areas = pairs[keep], shared[keep]
    graph = OverlapGraph(len(tiles), edges, areas, duplicates)
    graph.neighbours = [set() for _ in tiles]
    for i, j in edges:
        graph.neighbours[i].add(int(j))
        graph.neighbours[j].add(int(i))
    matrix = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(len(tiles), len(tiles)))
    _, labels = connected_components(matrix, directed=False)
    first: dict[int, int] = {}
    component = np.array([first.setdefault(int(label), len(first)) for label in labels], int)
    component[list(duplicates)] = -1
    graph.component = _renumber(component)
    return graph


def minimum_area(tiles: list[Tile], options: ViewsOptions) -> float:
    """``min_overlap_area``, or the area of one patch at the grid's resolution."""
    if options.min_overlap_area is not None:
        return options.min_overlap_area
    resolution = options.resolution or min(t.resolution for t in tiles)
    return float((options.patch_size * resolution) ** 2)


def _renumber(component: np.ndarray) -> np.ndarray:
    """Component labels 0.. in order of first appearance, -1 kept."""
    order: dict[int, int] = {}
    return np.array([-1 if c < 0 else order.setdefault(int(c), len(order)) for c in component], int)
