"""Patch extraction of ``eossl views build``: throughput with 1 and 2 dask workers, and peak memory
against the number of tiles (each build in its own process, so ``ru_maxrss`` is that build's).

    uv run python benchmarks/views_extract.py --tiles 24 48 96 --size 256 --bands 8

Throughput counts the extraction phase (dask workers reading, warping and writing parts; the
LocalCluster's start-up is included, the plan and the store assembly are not) in samples (patch x
date) per second and MB of patch pixels per second.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from eossl.data.synth.tiles import TileSetSpec, write_tile_set
from eossl.data.views.build import BuildRequest, build_views
from eossl.data.views.options import ViewsOptions

OPTIONS = ViewsOptions(patch_size=32)


def one_build(tiles: Path, store: Path, workers: int) -> dict:
    result = build_views(BuildRequest(tiles, store, OPTIONS, workers=workers, overwrite=True))
    megabytes = result.samples * 32 * 32 * 2 * _bands(tiles) / 1e6
    return {"workers": workers, "places": result.patches, "samples": result.samples,
            "extract_s": result.extract_seconds, "total_s": result.seconds,
            "samples_per_s": round(result.samples / result.extract_seconds, 1),
            "mb_per_s": round(megabytes / result.extract_seconds, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}  # fmt: skip


def _bands(tiles: Path) -> int:
    import rasterio

    with rasterio.open(next(tiles.glob("*.tif"))) as src:
        return src.count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, nargs="+", default=[24, 48, 96])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--bands", type=int, default=8)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # TILES STORE WORKERS: one build, JSON out
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_build(Path(args.child[0]), Path(args.child[1]), int(args.child[2]))))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in args.tiles:
            tiles = Path(tmp) / f"tiles-{count}"
            write_tile_set(tiles, TileSetSpec(tiles=count, size=args.size, bands=args.bands, seed=0))
            for workers in (0, 1, 2):
                out = subprocess.run([sys.executable, __file__, "--child", str(tiles), str(Path(tmp) / "store"),
                                      str(workers)], check=True, capture_output=True, text=True).stdout  # fmt: skip
                row = {"tiles": count, **json.loads(out.strip().splitlines()[-1])}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\n| tiles | workers | places | samples | extraction s | samples/s | MB/s | peak RSS MB (main) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        where = "this process" if r["workers"] == 0 else r["workers"]
        print(f"| {r['tiles']} | {where} | {r['places']} | {r['samples']} | {r['extract_s']} | {r['samples_per_s']} "
              f"| {r['mb_per_s']} | {r['peak_rss_mb']} |")


if __name__ == "__main__":
    main()
