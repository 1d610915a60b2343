"""``eossl views plan``: tiles -> overlap graph -> combinations -> expected patches, with the graph's
statistics and a PNG map of the footprints coloured by overlap degree. Geometry only: no pixel is
read, so the expected counts are upper bounds (patches over the nodata threshold are skipped later)."""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eossl.data.views.combinations import Combination, all_combinations
from eossl.data.views.graph import OverlapGraph, overlap_graph
from eossl.data.views.layout import Grid, component_grid, expected_patches
from eossl.data.views.options import ViewsOptions
from eossl.data.views.tiles import TileSet, read_tiles, transform_geometry

DEGREE_BINS = ((0, 0), (1, 1), (2, 2), (3, 5), (6, 10), (11, 20), (21, 30), (31, None))


@dataclass
class ComponentPlan:
    """One connected component: its tiles (indices into the tile set), combinations in emission order,
    grid, and expected patches per number of dates."""

    index: int
    tiles: list[int]
    combinations: list[Combination]
    grid: Grid
    expected: Counter[int]


@dataclass
class ViewsPlan:
    """Everything ``views build`` will do, known before reading pixels."""

    tileset: TileSet
    options: ViewsOptions
    graph: OverlapGraph
    components: list[ComponentPlan]
    seconds: dict[str, float]

    def statistics(self) -> dict[str, Any]:
        """Tiles, edges, components, degree histogram, combinations and expected patches (JSON-able)."""
        degree = self.graph.degree[[i for c in self.components for i in c.tiles]]
        expected: Counter[int] = sum((c.expected for c in self.components), Counter())
        sizes = Counter(comb.size for c in self.components for comb in c.combinations)
        return {
            "tiles": len(self.tileset.tiles),
            "duplicates": len(self.graph.duplicates),
            "left_out": len(self.tileset.left_out),
            "edges": len(self.graph.edges),
            "components": len(self.components),
            "largest_component": max((len(c.tiles) for c in self.components), default=0),
            "max_degree": int(degree.max(initial=0)),
            "degree_histogram": {_bin_name(lo, hi): int(((degree >= lo) & (degree <= (hi if hi is not None else
                                 10**9))).sum()) for lo, hi in DEGREE_BINS},
            "combinations": dict(sorted(sizes.items())),
            "expected_patches": int(sum(expected.values())),
            "expected_patches_with_dates": {f">={n}": int(sum(v for k, v in expected.items() if k >= n))
                                            for n in (2, 3, 4)},
            "expected_samples": int(sum(k * v for k, v in expected.items())),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }

    def summary(self) -> str:
        """The statistics as a few lines of text."""
        s = self.statistics()
        histogram = ", ".join(f"{k}: {v}" for k, v in s["degree_histogram"].items())
        with_dates = ", ".join(f"{k} dates {v}" for k, v in s["expected_patches_with_dates"].items())
        combinations = ", ".join(f"{k}-tuples {v}" for k, v in s["combinations"].items())
        return "\n".join([
            f"tiles {s['tiles']} ({s['duplicates']} duplicates dropped, {s['left_out']} left out), edges {s['edges']}, "
            f"components {s['components']} (largest {s['largest_component']} tiles), max degree {s['max_degree']}",
            f"degree histogram: {histogram}",
            f"combinations: {combinations or 'none'}",
            f"expected patches {s['expected_patches']} ({with_dates}); {s['expected_samples']} samples (patch x date)",
        ])  # fmt: skip


def _bin_name(lo: int, hi: int | None) -> str:
    return f">{lo - 1}" if hi is None else (str(lo) if lo == hi else f"{lo}-{hi}")


def make_plan(source: Path | str, options: ViewsOptions) -> ViewsPlan:
    """Read the tiles of ``source`` and plan the views (see the module docstring)."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    tileset = read_tiles(Path(source), options)
    seconds["tiles"] = time.perf_counter() - start
    graph = overlap_graph(tileset.tiles, options)
    seconds["graph"] = time.perf_counter() - start - seconds["tiles"]
    combinations = all_combinations(graph, tileset.tiles, options)
    seconds["combinations"] = time.perf_counter() - start - seconds["tiles"] - seconds["graph"]
    components = []
    for index, (members, combs) in enumerate(zip(graph.components(), combinations, strict=True)):
        tiles = [tileset.tiles[i] for i in members]
        grid = component_grid(tiles, options)
        anchor = next(t for t in tiles if t.crs == grid.crs) if any(t.crs == grid.crs for t in tiles) else None
        grid = component_grid(tiles, options, anchor.origin if anchor else (0.0, 0.0))
        components.append(ComponentPlan(index, members, combs, grid, expected_patches(combs, grid, options)))
    seconds["layout"] = time.perf_counter() - start - sum(seconds.values())
    return ViewsPlan(tileset, options, graph, components, seconds)


def write_plan_map(plan: ViewsPlan, path: Path) -> Path:
    """A PNG of the footprints (lon/lat) coloured by overlap degree, duplicates dashed; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    tiles, degree = plan.tileset.tiles, plan.graph.degree
    outlines = [np.asarray(transform_geometry(t.footprint, "EPSG:6933", "EPSG:4326").exterior.coords) for t in tiles]
    fig, ax = plt.subplots(figsize=(8, 6.5), dpi=110)
    kept = [i for i in range(len(tiles)) if i not in plan.graph.duplicates]
    collection = PolyCollection([outlines[i] for i in kept], array=degree[kept], cmap="viridis", alpha=0.45,
                                edgecolors="k", linewidths=0.4)  # fmt: skip
    ax.add_collection(collection)
    for i in plan.graph.duplicates:
        ax.plot(*outlines[i].T, "r--", linewidth=1.0)
    fig.colorbar(collection, ax=ax, shrink=0.7, label="overlap degree (edges per tile)")
    everything = np.concatenate(outlines)
    ax.set_xlim(everything[:, 0].min(), everything[:, 0].max())
    ax.set_ylim(everything[:, 1].min(), everything[:, 1].max())
    ax.set_aspect(1 / max(np.cos(np.radians(everything[:, 1].mean())), 1e-3))
    s = plan.statistics()
    temporal = s["expected_patches_with_dates"][">=2"]
    ax.set_title(f"{s['tiles']} tiles, {s['edges']} edges, {s['components']} components, "
                 f"{s['expected_patches']} expected patches ({temporal} with >= 2 dates)",
                 fontsize=9)  # fmt: skip
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}.png")
    fig.savefig(tmp, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path
