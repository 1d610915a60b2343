"""Where patches go: a component's common grid (one CRS, one resolution, corners on one lattice), the
patches that fit inside a combination's intersection, and an R-tree of emitted patches so that a
place is never emitted twice (a patch is refused when more than ``max_patch_overlap`` of it is
already covered by one emitted patch)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import shapely

from eossl.data.views.combinations import Combination
from eossl.data.views.options import ViewsOptions
from eossl.data.views.tiles import Tile, from_equal_area


@dataclass(frozen=True)
class Grid:
    """Patch corners at ``(origin_x + i * step, origin_y + j * step)`` metres of ``crs``; pixels of
    ``resolution`` metres, patches ``patch`` pixels a side."""

    crs: str
    resolution: float
    patch: int
    step: int
    origin_x: float
    origin_y: float

    @property
    def patch_m(self) -> float:
        return self.patch * self.resolution

    @property
    def step_m(self) -> float:
        return self.step * self.resolution


def component_grid(tiles: list[Tile], options: ViewsOptions, origin: tuple[float, float] = (0.0, 0.0)) -> Grid:
    """The grid of a component: ``options.crs`` or its tiles' most common CRS (the first tile's on a tie),
    ``options.resolution`` or the finest tile's; ``origin``: a corner of the first tile in that CRS, so
    that tiles on the same pixel lattice are read without resampling."""
    counts = Counter(t.crs for t in tiles)
    crs = options.crs or max(counts, key=lambda c: (counts[c], -[t.crs for t in tiles].index(c)))
    resolution = options.resolution or min(t.resolution for t in tiles)
    step_m = options.step * resolution
    return Grid(crs, resolution, options.patch_size, options.step, origin[0] % step_m, origin[1] % step_m)


def candidate_patches(combination: Combination, grid: Grid) -> np.ndarray:
    """``[P, 2]`` upper-left corners ``(x, y)`` of the grid patches inside the combination's intersection,
    top row first, left to right."""
    polygon = from_equal_area(combination.geometry, grid.crs)
    xmin, ymin, xmax, ymax = polygon.bounds
    size, step = grid.patch_m, grid.step_m
    first_x = grid.origin_x + math.floor((xmin - grid.origin_x) / step) * step
    first_y = grid.origin_y + math.ceil((ymax - grid.origin_y) / step) * step
    xs = np.arange(first_x, xmax - size + 1e-6, step)
    ys = np.arange(first_y, ymin + size - 1e-6, -step)
    if not len(xs) or not len(ys):
        return np.zeros((0, 2))
    corners = np.array([(x, y) for y in ys for x in xs])
    boxes = shapely.box(corners[:, 0], corners[:, 1] - size, corners[:, 0] + size, corners[:, 1])
    shapely.prepare(polygon)
    inside = shapely.area(shapely.intersection(boxes, polygon)) >= size * size * (1 - 1e-6)
    return corners[inside]


def patch_box(corner: np.ndarray | tuple[float, float], grid: Grid) -> shapely.Polygon:
    """The patch with upper-left ``corner`` as a polygon in the grid's CRS."""
    x, y = float(corner[0]), float(corner[1])
    return shapely.box(x, y - grid.patch_m, x + grid.patch_m, y)


class PatchIndex:
    """An R-tree (libspatialindex, via ``rtree``) of emitted patch polygons, all in one CRS."""

    def __init__(self, max_overlap: float) -> None:
        from rtree import index

        self.max_overlap = max_overlap
        self._tree = index.Index()
        self._polygons: list[shapely.Polygon] = []

    def __len__(self) -> int:
        return len(self._polygons)

    def blocked(self, polygon: shapely.Polygon) -> bool:
        """Whether an emitted patch already covers more than ``max_overlap`` of ``polygon``."""
        hits = list(self._tree.intersection(polygon.bounds))
        if not hits:
            return False
        shared = shapely.area(shapely.intersection(polygon, [self._polygons[i] for i in hits]))
        return bool((shared > self.max_overlap * polygon.area + 1e-9).any())

    def add(self, polygon: shapely.Polygon) -> None:
        self._tree.insert(len(self._polygons), polygon.bounds)
        self._polygons.append(polygon)


def expected_patches(combinations: list[Combination], grid: Grid, options: ViewsOptions) -> Counter[int]:
    """Patches per number of dates if no pixel were nodata: the combinations placed in emission order
    through a :class:`PatchIndex`, as ``views build`` places them."""
    index, counts = PatchIndex(options.max_patch_overlap), Counter()
    for combination in combinations:
        for corner in candidate_patches(combination, grid):
            polygon = patch_box(corner, grid)
            if not index.blocked(polygon):
                index.add(polygon)
                counts[combination.size] += 1
    return counts
