"""The commands that take models away: ``eossl export``, ``finetune``, ``predict`` and ``embed``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from eossl.cli.main import _guarded, app


@app.command()
def export(
    source: Annotated[Path, typer.Argument(help="pretraining run folder or its .ckpt")],
    out: Annotated[Path, typer.Argument(help="folder to write (timm's local-dir layout)")],
    format: str = typer.Option("timm", "--format", help="timm: config.json + model.safetensors; onnx: also model.onnx"),
    modality: str = typer.Option(None, help="which encoder of a cross-modal checkpoint (e.g. s1, or s2+s1 fused)"),
    report: Path = typer.Option(None, help="an 'eossl evaluate' run whose table goes into the model card"),
    overwrite: bool = typer.Option(False, help="replace an existing folder"),
) -> None:
    """Export a pretrained encoder: timm.create_model("local-dir:OUT", pretrained=True) loads it."""
    from eossl.deploy.export import ExportRequest, export_encoder
    from eossl.errors import ConfigError

    def run():
        if format not in ("timm", "onnx"):
            raise ConfigError(f"--format: expected timm or onnx, got '{format}'")
        result = export_encoder(ExportRequest(source, out, format, modality, report, overwrite))
        typer.echo(f"exported the {result.modality} encoder ({result.architecture}) to {result.out}: "
                   f"{', '.join(result.files)}")  # fmt: skip
        typer.echo(f"  timm local-dir features vs eossl: max |diff| {result.timm_max_abs_diff:.2e}")
        if result.onnx_max_abs_diff is not None:
            typer.echo(f"  onnxruntime features vs PyTorch: max |diff| {result.onnx_max_abs_diff:.2e}")
        note = "after `import eossl` (eossl_encoder)" if result.needs_eossl else "with timm alone"
        typer.echo(f'  load {note}: timm.create_model("local-dir:{result.out}", pretrained=True)')

    _guarded(run)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def finetune(ctx: typer.Context, config: Annotated[Path, typer.Argument(help="YAML config")]) -> None:
    """Train one task model on a store's target and save it as a deployable folder (see configs/finetune.yaml)."""
    from eossl.config import load_config
    from eossl.deploy.finetune import FinetuneConfig, run_finetune

    def run():
        summary = run_finetune(load_config(FinetuneConfig, config, ctx.args), log=typer.echo)
        typer.echo(f"task model: {summary.out} ({summary.seconds:.0f}s)")

    _guarded(run)


@app.command()
def embed(
    model: Annotated[Path, typer.Argument(help="an export folder, a pretraining run folder or its .ckpt")],
    source: Annotated[Path, typer.Argument(help="a GeoTIFF scene, a folder of GeoTIFFs or a store")],
    out: Annotated[Path, typer.Argument(help="GeoParquet file to write")],
    modality: str = typer.Option(None, help="which encoder of a cross-modal checkpoint"),
    tile: int = typer.Option(None, help="patch side in pixels (default: the encoder's training patch size)"),
    stride: int = typer.Option(None, help="step between patches (default: the tile)"),
    batch_size: int = typer.Option(64),
    max_nodata: float = typer.Option(0.5, help="skip patches with a larger share of nodata pixels"),
    bands: str = typer.Option(None, help="comma-separated band names of files without band descriptions"),
    overwrite: bool = typer.Option(False, help="replace an existing file"),
    device: str = typer.Option("auto", help="auto (cuda when available), cpu or cuda"),
) -> None:
    """Per-patch embeddings of a region as GeoParquet (footprint geometry, embedding vector, time)."""
    from eossl.deploy.embed import EmbedRequest
    from eossl.deploy.embed import embed as run_embed

    def run():
        request = EmbedRequest(model, source, out, modality, tile, stride, batch_size, max_nodata,
                               bands.split(",") if bands else None, overwrite, device)  # fmt: skip
        summary = run_embed(request, progress=_progress("patches"))
        typer.echo(f"\nwrote {summary.patches} embeddings of dimension {summary.dimension} ({summary.crs}) to "
                   f"{summary.out} in {summary.seconds:.1f}s; {summary.skipped_nodata} skipped (nodata)")  # fmt: skip

    _guarded(run)


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="a folder of 'eossl finetune' ('eossl export' with --features)")],
    scenes: Annotated[list[Path], typer.Argument(help="SCENE.tif [SCENE2.tif for a change model] OUT.tif")],
    tile: int = typer.Option(None, help="tile side in pixels (default: the model's training patch size)"),
    overlap: int = typer.Option(None, help="pixels shared by neighbouring tiles, blended (default: tile // 4)"),
    batch_size: int = typer.Option(16),
    bands: str = typer.Option(None, help="comma-separated band names of files without band descriptions"),
    output: str = typer.Option("classes", help="classes | probabilities | both (class tasks)"),
    task: str = typer.Option(None, help="which task of a multi-task model"),
    features: bool = typer.Option(False, "--features", help="MODEL is an exported encoder: write per-tile embeddings"),
    scale: float = typer.Option(None, help="override the model's stored -> physical scale"),
    offset: float = typer.Option(None, help="override the model's stored -> physical offset"),
    overwrite: bool = typer.Option(False, help="replace an existing output"),
    device: str = typer.Option("auto", help="auto (cuda when available), cpu or cuda"),
) -> None:
    """Tiled inference over whole georeferenced scenes into a Cloud-Optimised GeoTIFF."""
    from eossl.deploy.predict import PredictRequest
    from eossl.deploy.predict import predict as run_predict
    from eossl.errors import ConfigError

    def run():
        if len(scenes) not in (2, 3):
            raise ConfigError(f"expected SCENE.tif [SCENE2.tif] OUT.tif, got {len(scenes)} paths")
        if output not in ("classes", "probabilities", "both"):
            raise ConfigError(f"--output: expected classes, probabilities or both, got '{output}'")
        request = PredictRequest(model, list(scenes[:-1]), scenes[-1], tile, overlap, batch_size,
                                 bands.split(",") if bands else None, output, task, features, overwrite, device,
                                 scale, offset)  # fmt: skip
        summary = run_predict(request, progress=_progress("tiles"))
        for warning in summary.warnings:
            typer.secho(f"\nWARNING {warning}", fg=typer.colors.YELLOW, err=True)
        typer.echo(f"\nwrote {', '.join(map(str, summary.outputs or [summary.out]))}: {summary.width} x "
                   f"{summary.height} px, {summary.tiles} tiles in {summary.seconds:.1f}s "
                   f"({summary.tiles_per_second:.1f} tiles/s, peak RSS {summary.peak_rss_mb:.0f} MB)")  # fmt: skip

    _guarded(run)


def _progress(what: str):
    """A one-line progress counter on stderr."""

    def show(done: int, total: int) -> None:
        typer.echo(f"\r{done}/{total} {what}", nl=False, err=True)

    return show
