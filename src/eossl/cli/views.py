"""``eossl views plan | build | synth``: temporal views from overlapping tiles (:mod:`eossl.data.views`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from eossl.cli.main import _guarded, app

views_app = typer.Typer(help="Multi-date patches from overlapping tiles (SpectralEarth's Algorithm 1).",
                        no_args_is_help=True)  # fmt: skip
app.add_typer(views_app, name="views")

SOURCE_HELP = "a folder of GeoTIFF tiles, a CSV of paths (path, time, sensor) or a STAC ItemCollection .json"


def _options(config: Path | None, patch_size: int | None, stride: int | None, min_dates: int | None,
             max_nodata: float | None, sensor: str | None):  # fmt: skip
    from eossl.data.views.options import load_views_options

    return load_views_options(config, patch_size=patch_size, stride=stride, min_dates=min_dates,
                              max_nodata=max_nodata, sensor=sensor)  # fmt: skip


CONFIG = typer.Option(None, "--config", help="views YAML (keys of eossl.data.views.ViewsOptions)")
PATCH = typer.Option(None, help="patch side in pixels (default 128)")
STRIDE = typer.Option(None, help="patch step in pixels (default: the patch size)")
MIN_DATES = typer.Option(None, help="emit only patches with at least this many dates (default 1)")
MAX_NODATA = typer.Option(None, help="largest nodata share of any date of a patch (default 0)")
SENSOR = typer.Option(None, help="sensor preset or YAML (default: SOURCE/sensor.yaml, else from the tiles)")


@views_app.command("plan")
def views_plan(
    source: Annotated[Path, typer.Argument(help=SOURCE_HELP)],
    out: Path = typer.Option(None, help="folder for plan.json and plan.png (default: print only)"),
    config: Path = CONFIG,
    patch_size: int = PATCH,
    stride: int = STRIDE,
    min_dates: int = MIN_DATES,
    max_nodata: float = MAX_NODATA,
    sensor: str = SENSOR,
) -> None:
    """Print the overlap graph's statistics and the expected patches; write a map of the footprints."""
    from eossl.data.views.plan import make_plan, write_plan_map
    from eossl.io import write_text_atomic

    def run():
        plan = make_plan(source, _options(config, patch_size, stride, min_dates, max_nodata, sensor))
        typer.echo(plan.summary())
        if out is not None:
            payload = {"statistics": plan.statistics(), "left_out": plan.tileset.left_out,
                       "duplicates": {plan.tileset.tiles[k].id: plan.tileset.tiles[v].id
                                      for k, v in plan.graph.duplicates.items()},
                       "tiles": [{"id": t.id, "path": t.path, "crs": t.crs, "time": t.time.isoformat(),
                                  "degree": int(d), "component": int(c)}
                                 for t, d, c in zip(plan.tileset.tiles, plan.graph.degree, plan.graph.component,
                                                    strict=True)]}  # fmt: skip
            out.mkdir(parents=True, exist_ok=True)
            write_text_atomic(out / "plan.json", json.dumps(payload, indent=2))
            typer.echo(f"wrote {out / 'plan.json'} and {write_plan_map(plan, out / 'plan.png')}")

    _guarded(run)


@views_app.command("build")
def views_build(
    source: Annotated[Path, typer.Argument(help=SOURCE_HELP)],
    store: Annotated[Path, typer.Argument(help="store folder to create")],
    config: Path = CONFIG,
    patch_size: int = PATCH,
    stride: int = STRIDE,
    min_dates: int = MIN_DATES,
    max_nodata: float = MAX_NODATA,
    sensor: str = SENSOR,
    workers: int = typer.Option(None, help="dask LocalCluster workers (default one per core; 0: this process)"),
    scheduler: str = typer.Option(None, help="address of an existing dask scheduler (tcp://host:8786)"),
    work: Path = typer.Option(None, help="folder for the components' parts (default STORE.views-work)"),
    keep_work: bool = typer.Option(False, help="keep the parts after the store is published"),
    overwrite: bool = typer.Option(False, help="replace an existing store (and a work folder of another plan)"),
) -> None:
    """Extract multi-date patches per connected component (resumable) into a store with dates."""
    from eossl.data.views.build import BuildRequest, build_views

    def run():
        options = _options(config, patch_size, stride, min_dates, max_nodata, sensor)
        request = BuildRequest(source, store, options, work, workers, scheduler, overwrite, keep_work)
        result = build_views(request, progress=lambda done, total: typer.echo(f"\r{done}/{total} components",
                                                                               nl=False))  # fmt: skip
        dates = ", ".join(f"{k} dates: {v}" for k, v in result.dates.items())
        typer.echo(f"\nwrote {result.store}: {result.patches} places, {result.samples} samples ({dates}); "
                   f"{result.components_run} of {result.components} components extracted now in {result.where}, "
                   f"{result.seconds:.1f} s; skipped {result.skipped}")  # fmt: skip

    _guarded(run)


@views_app.command("synth")
def views_synth(
    out: Annotated[Path, typer.Argument(help="folder for the synthetic tiles")],
    tiles: int = typer.Option(12, help="acquisitions (a duplicate comes on top)"),
    size: int = typer.Option(96, help="raster side in pixels"),
    bands: int = typer.Option(4),
    seed: int = typer.Option(0),
    overwrite: bool = typer.Option(False, help="replace the tiles of an existing folder"),
) -> None:
    """Write a synthetic tile set: rotated, shifted footprints in two UTM zones, NaN stripes, a duplicate."""
    from eossl.data.synth.tiles import TileSetSpec, write_tile_set

    def run():
        paths = write_tile_set(out, TileSetSpec(tiles=tiles, size=size, bands=bands, seed=seed), overwrite=overwrite)
        typer.echo(f"wrote {len(paths)} tiles, sensor.yaml, tiles.csv and tiles.stac.json to {out}")

    _guarded(run)
