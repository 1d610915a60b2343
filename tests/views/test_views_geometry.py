"""The overlap graph, Algorithm 1's combinations and the patch layout on hand-made footprints whose
intersections and expected tuples are worked out by hand (metres of the equal-area CRS)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely

from eossl.data.views.combinations import all_combinations
from eossl.data.views.graph import candidate_pairs, overlap_graph
from eossl.data.views.layout import PatchIndex, component_grid, expected_patches
from eossl.data.views.options import EQUAL_AREA_CRS, ViewsOptions
from eossl.data.views.tiles import Tile

DAY0 = pd.Timestamp("2024-05-01T10:00:00Z")


def tile(name: str, bounds: tuple[float, float, float, float], days: float) -> Tile:
    return Tile(name, "", EQUAL_AREA_CRS, 1.0, DAY0 + pd.Timedelta(days=days), "SYN", shapely.box(*bounds))


# A, B, C overlap pairwise; F revisits A's footprint 40 days later; E is A again one minute later (a
# duplicate); D is far away.            A0 (0-100 x 0-100)   B1 shifted right 50   C2 shifted up 50
TILES = [
    tile("A", (0, 0, 100, 100), 0),
    tile("B", (50, 0, 150, 100), 10),
    tile("C", (0, 50, 100, 150), 20),
    tile("D", (1000, 1000, 1100, 1100), 0),
    tile("E", (0, 0, 100, 100), 1 / 1440),
    tile("F", (0, 0, 100, 100), 40),
]
OPTIONS = ViewsOptions(patch_size=10, resolution=1.0)  # minimum overlap: one 10 x 10 patch = 100 m²


def test_the_graph_has_the_hand_computed_edges_areas_duplicates_and_components() -> None:
    graph = overlap_graph(TILES, OPTIONS)
    edges = {tuple(e): a for e, a in zip(graph.edges.tolist(), graph.areas, strict=True)}
    assert edges == pytest.approx({(0, 1): 5000, (0, 2): 5000, (1, 2): 2500, (0, 5): 10000, (1, 5): 5000,
                                   (2, 5): 5000})  # fmt: skip
    assert graph.duplicates == {4: 0}  # E: A's footprint within a minute
    assert graph.components() == [[0, 1, 2, 5], [3]]
    assert graph.degree.tolist() == [3, 3, 3, 0, 0, 3]


def test_an_overlap_below_the_minimum_area_and_one_pass_make_no_edge() -> None:
    sliver = tile("G", (95, 0, 195, 100), 5)  # 5 x 100 = 500 m² with A
    same_pass = tile("H", (60, 0, 160, 100), 10.0001)  # B's pass: 10 s later, other footprint
    graph = overlap_graph([TILES[0], sliver, TILES[1], same_pass], OPTIONS.model_copy(update={"min_overlap_area": 600}))
    edges = {tuple(e) for e in graph.edges.tolist()}
    assert (0, 1) not in edges and (2, 3) not in edges and (0, 2) in edges and (0, 3) in edges
    assert graph.duplicates == {}  # IoU of B and H is 0.67: neighbouring tiles of one pass, not a copy


def test_the_spatial_index_finds_the_same_pairs_as_all_pairs() -> None:
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 1000, size=(300, 2))
    boxes = shapely.box(corners[:, 0], corners[:, 1], corners[:, 0] + 60, corners[:, 1] + 40)
    brute = {(i, j) for i in range(300) for j in range(i + 1, 300) if boxes[i].intersects(boxes[j])}
    assert {tuple(p) for p in candidate_pairs(boxes).tolist()} == brute and brute


def test_combinations_follow_algorithm_1_and_covered_tuples_are_pruned() -> None:
    graph = overlap_graph(TILES, OPTIONS)
    first, second = all_combinations(graph, TILES, OPTIONS)
    found = [(c.tiles, round(c.area)) for c in first]
    # the 4-tuple covers {A,B,C} and {B,C,F} (both 2500 m²); {A,B,F} covers {A,B} and {B,F}; ...
    assert found == [((0, 1, 2, 5), 2500), ((0, 1, 5), 5000), ((0, 2, 5), 5000), ((0, 5), 10000),
                     ((1,), 10000), ((2,), 10000)]  # fmt: skip
    assert [(c.tiles, round(c.area)) for c in second] == [((3,), 10000)]
    only_pairs = all_combinations(graph, TILES, OPTIONS.model_copy(update={"max_dates": 2}))[0]
    assert max(c.size for c in only_pairs) == 2
    temporal = all_combinations(graph, TILES, OPTIONS.model_copy(update={"min_dates": 2}))[0]
    assert min(c.size for c in temporal) == 2


def test_the_largest_tuples_are_kept_per_tile_and_size() -> None:
    ring = [tile(f"T{k}", (k * 10, 0, k * 10 + 100, 100), k) for k in range(6)]  # shifted 10 m each
    graph = overlap_graph(ring, OPTIONS)
    kept = all_combinations(graph, ring, OPTIONS.model_copy(update={"max_tuples": 1}))[0]
    pairs = [c.tiles for c in kept if c.size == 2]
    assert all(abs(i - j) == 1 for i, j in pairs)  # the largest pair of each tile is a neighbour
    assert max(c.size for c in kept) == 6  # grown until no valid tuple is left


def test_patches_are_placed_largest_combination_first_and_never_twice() -> None:
    graph = overlap_graph(TILES, OPTIONS)
    first = all_combinations(graph, TILES, OPTIONS)[0]
    grid = component_grid([TILES[i] for i in (0, 1, 2, 5)], OPTIONS)
    # 4 dates: 50 x 50 m = 25 patches; 3 dates: {A,B,F} and {A,C,F} 50 each minus those 25 -> 25 + 25;
    # 2 dates: A minus the 75 above; single: B and C outside A, 50 each
    assert expected_patches(first, grid, OPTIONS) == {4: 25, 3: 50, 2: 25, 1: 100}


def test_the_patch_index_refuses_a_patch_mostly_emitted() -> None:
    index = PatchIndex(max_overlap=0.5)
    index.add(shapely.box(0, 0, 10, 10))
    assert index.blocked(shapely.box(4, 0, 14, 10)) and not index.blocked(shapely.box(5, 0, 15, 10))
    assert not index.blocked(shapely.box(10, 0, 20, 10)) and len(index) == 1
