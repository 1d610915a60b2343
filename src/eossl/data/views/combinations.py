"""Combinations of tiles whose intersection holds patches with many dates (SpectralEarth, Algorithm 1).

``BUILDCOMBINATIONS(tile)``: start from the tile's edges (2-tuples); for n = 3, 4, ... grow n-tuples
from the kept (n-1)-tuples by one tile adjacent to every member, intersect, keep the ``max_tuples``
largest by area of those at least ``min_overlap_area``; stop when no valid n-tuple is left.
Intersections are memoised per component (a tuple grown from each of its tiles is intersected once).
Then a tuple whose intersection a larger tuple's covers (area within ``cover_tolerance``) is pruned:
every patch it could give, the larger tuple gives with one more date. Combinations are emitted
largest first (size, then area), so a place is taken by its longest time series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from eossl.data.views.graph import OverlapGraph, minimum_area
from eossl.data.views.options import ViewsOptions
from eossl.data.views.tiles import Tile


@dataclass(frozen=True)
class Combination:
    """Sorted tile indices, their common footprint (equal-area CRS) and its area in m²."""

    tiles: tuple[int, ...]
    area: float
    geometry: shapely.Geometry

    @property
    def size(self) -> int:
        return len(self.tiles)


class _Intersections:
    """Memoised intersections of tuples of one component (``None``: below the minimum area)."""

    def __init__(self, footprints: np.ndarray, min_area: float) -> None:
        self.footprints, self.min_area = footprints, min_area
        self.known: dict[tuple[int, ...], Combination | None] = {}
        self.common: dict[tuple[int, ...], set[int]] = {}  # tiles adjacent to every member

    def candidates(self, base: Combination, graph: OverlapGraph) -> list[int]:
        """Tiles adjacent to every member of ``base`` (the growth candidates), computed incrementally."""
        common = self.common.get(base.tiles)
        if common is None:
            parent = self.common.get(base.tiles[:-1]) if base.size > 1 else None
            if parent is None:
                common = set.intersection(*(graph.neighbours[m] for m in base.tiles))
            else:
                common = parent & graph.neighbours[base.tiles[-1]]
            common = self.common[base.tiles] = common.difference(base.tiles)
        return sorted(common)

    def grow(self, base: Combination, candidates: list[int]) -> list[Combination]:
        """The valid tuples ``base + (c,)`` for each candidate ``c`` (new ones intersected in one call)."""
        keys = [tuple(sorted((*base.tiles, c))) for c in candidates]
        new = [(k, c) for k, c in zip(keys, candidates, strict=True) if k not in self.known]
        if new:
            geometries = shapely.intersection(base.geometry, self.footprints[[c for _, c in new]])
            for (key, _), geometry, area in zip(new, geometries, shapely.area(geometries), strict=True):
                self.known[key] = Combination(key, float(area), geometry) if area >= self.min_area else None
        return [c for c in (self.known[k] for k in keys) if c is not None]


def build_combinations(
    tile: int, graph: OverlapGraph, memo: _Intersections, options: ViewsOptions
) -> list[Combination]:
    """Algorithm 1's BUILDCOMBINATIONS: the tile alone, then its kept n-tuples for n = 2, 3, ..."""
    single = Combination((tile,), float(memo.footprints[tile].area), memo.footprints[tile])
    level = _largest(memo.grow(single, sorted(graph.neighbours[tile])), options.max_tuples)
    found = [single, *level]
    for _ in range(3, options.max_dates + 1):
        grown: dict[tuple[int, ...], Combination] = {}
        for base in level:
            for combination in memo.grow(base, memo.candidates(base, graph)):
                grown[combination.tiles] = combination
        level = _largest(list(grown.values()), options.max_tuples)
        if not level:
            break
        found.extend(level)
    return found


def _largest(combinations: list[Combination], count: int) -> list[Combination]:
    return sorted(combinations, key=lambda c: (-c.area, c.tiles))[:count]


def component_combinations(
    component: list[int], graph: OverlapGraph, tiles: list[Tile], options: ViewsOptions
) -> list[Combination]:
    """The combinations of one connected component, pruned and in emission order (largest first)."""
    return all_combinations(graph, tiles, options, [component])[0]


def all_combinations(
    graph: OverlapGraph, tiles: list[Tile], options: ViewsOptions, components: list[list[int]] | None = None
) -> list[list[Combination]]:
    """The combinations of each component (default: every component of ``graph``, in order)."""
    footprints = np.array([t.footprint for t in tiles], dtype=object)
    min_area = minimum_area(tiles, options)
    return [_component(c, graph, _Intersections(footprints, min_area), options)
            for c in (graph.components() if components is None else components)]  # fmt: skip


def _component(component: list[int], graph: OverlapGraph, memo: _Intersections, options: ViewsOptions) -> list:
    kept: dict[tuple[int, ...], Combination] = {}
    for tile in component:
        for combination in build_combinations(tile, graph, memo, options):
            kept[combination.tiles] = combination
    covered = set()
    for larger in kept.values():
        for member in larger.tiles if larger.size > 1 else ():
            subset = tuple(t for t in larger.tiles if t != member)
            smaller = kept.get(subset)
            if smaller is not None and larger.area >= (1 - options.cover_tolerance) * smaller.area:
                covered.add(subset)
    emitted = [c for key, c in kept.items() if key not in covered and c.size >= options.min_dates]
    return sorted(emitted, key=lambda c: (-c.size, -c.area, c.tiles))
