"""Overlap graph + combinations (``eossl views``) against an all-pairs baseline, on simulated footprints.

EnMAP-like tiles (30 km, rotated 8-15 degrees) revisit sites whose popularity is heavy-tailed (a few
sites get dozens of passes, so some tiles have degree > 30), spread over an area that grows with the
number of tiles (constant density). For each size both pipelines run in this process, alternating:

* ``eossl``: STRtree bulk query -> overlap graph -> Algorithm-1 combinations per component;
* ``all-pairs``: no index anywhere: every pair tested for the graph (shapely's vectorised
  ``intersects`` row by row, prepared geometries), and each tuple grown by testing every tile against
  its intersection (then the same rules: adjacent to every member, area, top-k). The outputs are
  checked to be identical.

    uv run python benchmarks/views_graph.py --sizes 1000 3000 10000 30000 --baseline-up-to 3000
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd
import shapely
from shapely.affinity import rotate

from eossl.data.views import combinations as combinations_module
from eossl.data.views.combinations import all_combinations
from eossl.data.views.graph import candidate_pairs, overlap_graph
from eossl.data.views.options import ViewsOptions
from eossl.data.views.tiles import Tile

TILE_M = 30_000.0
SITE_DENSITY = 1 / (60_000.0**2)  # one revisited site per 60 km x 60 km
MEAN_PASSES = 4.0


def simulated_tiles(count: int, seed: int = 0) -> list[Tile]:
    """``count`` tile footprints (equal-area metres) at heavy-tailed sites, one date each."""
    rng = np.random.default_rng(seed)
    sites = max(1, int(count / MEAN_PASSES))
    side = np.sqrt(sites / SITE_DENSITY)
    centres = rng.uniform(0, side, size=(sites, 2))
    popularity = np.minimum(rng.pareto(2.0, size=sites) + 1, 12.0)  # at most ~45 passes of one site
    site_of = rng.choice(sites, size=count, p=popularity / popularity.sum())
    start = pd.Timestamp("2022-04-01", tz="UTC")
    tiles = []
    for k in range(count):
        cx, cy = centres[site_of[k]] + rng.normal(0, 0.2 * TILE_M, size=2)
        square = shapely.box(cx - TILE_M / 2, cy - TILE_M / 2, cx + TILE_M / 2, cy + TILE_M / 2)
        footprint = rotate(square, rng.uniform(8, 15), origin="centroid")
        when = start + pd.Timedelta(days=int(rng.integers(0, 900)), hours=float(rng.uniform(0, 24)))
        tiles.append(Tile(f"t{k:06d}", "", "EPSG:32632", 30.0, when, "EnMAP", footprint))
    return tiles


def all_pairs(footprints: np.ndarray) -> np.ndarray:
    """Every pair ``i < j`` whose footprints intersect, testing each against all later ones."""
    shapely.prepare(footprints)
    pairs = []
    for i in range(len(footprints) - 1):
        hits = np.flatnonzero(shapely.intersects(footprints[i], footprints[i + 1 :])) + i + 1
        pairs.append(np.column_stack([np.full(len(hits), i), hits]))
    shapely.destroy_prepared(footprints)
    return np.concatenate(pairs).astype(int) if pairs else np.zeros((0, 2), int)


class AllTilesIntersections(combinations_module._Intersections):
    """Growth candidates found by testing every tile against the tuple's intersection (no graph lookup)."""

    def candidates(self, base, graph):
        hits = np.flatnonzero(shapely.intersects(base.geometry, self.footprints))
        members = set(base.tiles)
        return [int(c) for c in hits if c not in members and all(c in graph.neighbours[m] for m in members)]


def run(tiles: list[Tile], options: ViewsOptions, baseline: bool) -> tuple[dict, list]:
    footprints = np.array([t.footprint for t in tiles], dtype=object)
    start = time.perf_counter()
    pairs = all_pairs(footprints) if baseline else candidate_pairs(footprints)
    graph = overlap_graph(tiles, options, pairs=pairs)
    graph_s = time.perf_counter() - start
    original = combinations_module._Intersections
    combinations_module._Intersections = AllTilesIntersections if baseline else original
    try:
        shapely.prepare(footprints)
        combinations = all_combinations(graph, tiles, options)
    finally:
        combinations_module._Intersections = original
    total = time.perf_counter() - start
    signature = sorted((c.tiles, round(c.area, 3)) for comp in combinations for c in comp)
    degree = graph.degree
    stats = {
        "tiles": len(tiles),
        "pipeline": "all-pairs" if baseline else "eossl",
        "graph_s": round(graph_s, 3),
        "combinations_s": round(total - graph_s, 3),
        "total_s": round(total, 3),
        "edges": len(graph.edges),
        "components": len(graph.components()),
        "max_degree": int(degree.max(initial=0)),
        "tiles_degree_over_30": int((degree > 30).sum()),
        "combinations": len(signature),
        "largest_tuple": max((len(t) for t, _ in signature), default=0),
    }
    return stats, signature


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 10000, 30000])
    parser.add_argument("--baseline-up-to", type=int, default=3000, help="largest size the baseline runs at")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    options = ViewsOptions(patch_size=128, resolution=30.0)
    rows = []
    for size in args.sizes:
        tiles = simulated_tiles(size)
        ours, signature = run(tiles, options, baseline=False)
        rows.append(ours)
        print(json.dumps(ours), flush=True)
        if size <= args.baseline_up_to:
            theirs, baseline_signature = run(tiles, options, baseline=True)
            if baseline_signature != signature:
                raise SystemExit(f"{size} tiles: the all-pairs baseline gave other combinations")
            theirs["speedup"] = round(theirs["total_s"] / ours["total_s"], 1)
            theirs["graph_speedup"] = round(theirs["graph_s"] / ours["graph_s"], 1)
            rows.append(theirs)
            print(json.dumps(theirs), flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
