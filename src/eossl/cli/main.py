"""The ``eossl`` command line."""

from __future__ import annotations

import errno
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Self-supervised, label-efficient deep learning for Earth observation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Build or inspect a sample store.", no_args_is_help=True)
app.add_typer(data_app, name="data")
report_app = typer.Typer(help="Render or merge evaluation reports.", no_args_is_help=True)
app.add_typer(report_app, name="report")


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
"""OS errors that say what is wrong with the machine or the path, shown as one line like EosslErrors."""


def _guarded(fn):
    """Turn errors meant for users (:class:`eossl.errors.EosslError`) into one clear line and exit
    status 2; anything else is a bug and keeps its traceback."""
    from eossl.errors import EosslError

    try:
        return fn()
    except EosslError as exc:
        _fail(str(exc))
    except OSError as exc:  # the machine's limits (a full disk, a read-only or forbidden path): not a bug
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            raise
        where = f" '{exc.filename}'" if exc.filename else ""
        _fail(f"{exc.strerror or exc} while writing{where}; outputs are written atomically, so files already "
              "there are unchanged: free space or choose another output folder and run again")  # fmt: skip


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Argument(help="store folder to create")],
    locations: int = typer.Option(1000, help="number of locations"),
    seasons: int = typer.Option(4, help="scenes per location (1, 2 or 4)"),
    patch_size: int = typer.Option(32, help="patch size in 10 m pixels"),
    cloud_probability: float = typer.Option(0.2, help="fraction of cloudy scenes"),
    seed: int = typer.Option(0),
    forest_targets: bool = typer.Option(False, help="add the targets forest (tree mask) and tree_density (5x5 share)"),
    change_fraction: float = typer.Option(
        0.0, help="share of locations with land-cover changes; > 0 adds s2_after, the change target and pair s2_change"
    ),
    hyperspectral_bands: int = typer.Option(0, help="bands of an EnMAP-like cube 'enmap' (e.g. 202; 0: none)"),
    overwrite: bool = typer.Option(False, help="replace an existing store"),
) -> None:
    """Generate the embedded synthetic Earth (S2, S1, DEM, land cover, targets) into a store."""
    from eossl.data.synth.generator import SynthSpec, synthesize_store

    if seasons not in (1, 2, 4):
        _fail(f"--seasons must be 1, 2 or 4, got {seasons}")

    def run():
        spec = SynthSpec(
            num_locations=locations,
            seasons=seasons,
            patch_size=patch_size,
            cloud_probability=cloud_probability,
            seed=seed,
            forest_targets=forest_targets,
            change_fraction=change_fraction,
            hyperspectral_bands=hyperspectral_bands,
        )
        path = synthesize_store(
            out,
            spec,
            overwrite=overwrite,
            progress=lambda done, total: typer.echo(f"\r{done}/{total} samples", nl=False),
        )
        typer.echo(f"\nwrote {path}")

    _guarded(run)


@data_app.command("synth-scene")
def data_synth_scene(
    out: Annotated[Path, typer.Argument(help="folder for the scene's GeoTIFFs")],
    size: int = typer.Option(512, help="scene side in 10 m pixels (a multiple of 32)"),
    seed: int = typer.Option(0),
    change: bool = typer.Option(False, help="also s2_after.tif (one year later, with changes) and change.tif"),
    overwrite: bool = typer.Option(False, help="replace files in an existing folder"),
) -> None:
    """Render one synthetic location as GeoTIFFs in its UTM zone (s2, s1, land cover, forest, change truth)."""
    from eossl.data.synth.scene import write_scene

    def run():
        for path in write_scene(out, size, seed, change_fraction=1.0 if change else 0.0, overwrite=overwrite):
            typer.echo(f"wrote {path}")

    _guarded(run)


@data_app.command("import", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def data_import(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="dataset layout (see 'eossl data importers')")],
    source: Annotated[str, typer.Argument(help="folder (or file) holding the dataset")],
    store: Annotated[Path, typer.Argument(help="store folder to create")],
    workers: int = typer.Option(
        None, help="dask LocalCluster workers (default: one per core, or this process below 64 items; 0: this process)"
    ),
    scheduler: str = typer.Option(None, help="address of an existing dask scheduler (tcp://host:8786)"),
    on_error: str = typer.Option("raise", help="raise: stop at the first bad file; skip: count it in the report"),
    overwrite: bool = typer.Option(False, help="replace an existing store"),
) -> None:
    """Import a dataset into a store. Importer options follow as key=value: sensor=s2-l2a patch_size=64."""
    from eossl.data.importers import IMPORTERS
    from eossl.data.importers.pipeline import read_report, summary_line
    from eossl.overrides import parse_overrides, validate_options

    def run():
        importer = IMPORTERS[kind]()
        given = parse_overrides(ctx.args)
        given.update(workers=workers, scheduler=scheduler, on_error=on_error, overwrite=overwrite)
        options = validate_options(importer.config, given, what=f"{kind} option")
        path = importer.write(
            Path(source), store, options, progress=lambda done, total: typer.echo(f"\r{done}/{total} items", nl=False)
        )
        typer.echo(f"\n{summary_line(read_report(path))}\nwrote {path}")

    _guarded(run)


@data_app.command("importers")
def data_importers() -> None:
    """List the importers with their options."""
    from eossl.data.importers import IMPORTERS, ImporterOptions

    common = set(ImporterOptions.model_fields)
    for name, importer in IMPORTERS.items():
        doc = (importer.__doc__ or "").strip().splitlines()[0]
        typer.echo(f"{name:<15} {doc}")
        own = {k: f for k, f in importer.config.model_fields.items() if k not in common}
        for key, info in own.items():
            typer.echo(f"{'':<17}{key}={info.default!r}  {info.description or ''}".rstrip())


@data_app.command("show")
def data_show(
    store: Annotated[Path, typer.Argument(help="store folder")],
    out: Path = typer.Option(None, help="PNG to write (default STORE/samples.png)"),
    count: int = typer.Option(8, help="number of samples in the grid"),
    seed: int = typer.Option(0, help="which samples to pick"),
) -> None:
    """Print a store's summary (arrays, statistics, modalities, targets, dates, pairs, split sizes) and
    write a PNG grid of samples."""
    from eossl.data.inspect import show_store

    _guarded(lambda: typer.echo(show_store(store, out, count, seed)))


@data_app.command("check")
def data_check(store: Annotated[str, typer.Argument(help="store folder (or URL)")]) -> None:
    """Decode and verify every chunk of a store and check its metadata: one line per problem, then a
    summary; exit status 1 when anything is damaged, 0 when the store is intact."""
    from eossl.data.check import check_store

    def run():
        report = check_store(store)
        for line in report.lines():
            typer.echo(line)
        if not report.ok:
            raise typer.Exit(code=1)

    _guarded(run)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def pretrain(ctx: typer.Context, config: Annotated[Path, typer.Argument(help="YAML config")]) -> None:
    """Self-supervised pretraining. Extra arguments override the config: optim.lr=0.01."""
    from eossl.config import PretrainConfig, load_config
    from eossl.methods.pretrain import run_pretrain

    _guarded(lambda: typer.echo(f"checkpoint: {run_pretrain(load_config(PretrainConfig, config, ctx.args))}"))


@app.command()
def methods() -> None:
    """List the pretraining methods with their family and default hyperparameters."""
    from eossl.methods import METHODS

    for name, method in METHODS.items():
        config = method.config
        defaults = ", ".join(f"{k}={v}" for k, v in config().model_dump().items() if k != "name")
        recipe = "; ".join(f"{section}: {values}" for section, values in config.recipe.items())
        typer.echo(f"{name:<13} {config.family:<13} {defaults}")
        if recipe:
            typer.echo(f"{'':<27} recipe -> {recipe}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def evaluate(ctx: typer.Context, config: Annotated[Path, typer.Argument(help="YAML config")]) -> None:
    """Inits x protocols (knn, linear, frozen, finetune, adapters) x tasks x label fractions x seeds ->
    results.csv, curves.csv, report.md/.html with plots."""
    from eossl.config import EvaluateConfig, load_config
    from eossl.evaluation.runner import run_evaluate

    def run():
        cfg = load_config(EvaluateConfig, config, ctx.args)
        run_evaluate(cfg, log=typer.echo)
        typer.echo(f"report: {Path(cfg.out) / 'report.md'}")

    _guarded(run)


@report_app.command("render")
def report_render(run: Annotated[Path, typer.Argument(help="folder written by 'eossl evaluate'")]) -> None:
    """Re-render report.md, report.html, summary and plots of a run from its results.csv."""
    import yaml

    from eossl.evaluation.report import write_report
    from eossl.evaluation.results import load_results

    def run_():
        config_path = run / "config.yaml"
        config = yaml.safe_load(config_path.read_text()) if config_path.exists() else None
        typer.echo(f"report: {write_report(load_results(run), run, config)}")

    _guarded(run_)


@report_app.command("compare")
def report_compare(
    runs: Annotated[list[Path], typer.Argument(help="two or more folders written by 'eossl evaluate'")],
    out: Path = typer.Option(Path("runs/compare"), help="folder for the merged results and report"),
) -> None:
    """Merge several runs into one results.csv and one report (an init present in several runs is
    suffixed with its run's name)."""
    from eossl.evaluation.report import write_report
    from eossl.evaluation.results import merge_runs, write_csv_atomic

    def run_():
        results, curves = merge_runs(runs)
        out.mkdir(parents=True, exist_ok=True)
        write_csv_atomic(results, out / "results.csv")
        write_csv_atomic(curves, out / "curves.csv")
        config = {"compared_runs": [str(r) for r in runs]}
        typer.echo(f"report: {write_report(results, out, config)}")

    _guarded(run_)


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="run folder"),
    quick: bool = typer.Option(False, "--quick", help="tiny settings, under 2 minutes"),
) -> None:
    """Synthetic Earth -> SimCLR -> linear probe and fine-tuning -> label-efficiency table."""
    from eossl.demo import run_demo

    _guarded(lambda: run_demo(out, quick=quick, log=typer.echo))


study_app = typer.Typer(help="Multi-stage studies that produce the README's evidence tables.", no_args_is_help=True)
app.add_typer(study_app, name="study")


@study_app.command("multimodal")
def study_multimodal(
    out: Path = typer.Option(Path("runs/multimodal"), help="study folder (an interrupted study resumes)"),
    quick: bool = typer.Option(False, "--quick", help="tiny settings, a few minutes"),
) -> None:
    """Dual-SimCLR vs SimCLR vs random, the modality-fusion table, multi-task vs single-task."""
    from eossl.studies.multimodal import run_multimodal_study

    _guarded(lambda: run_multimodal_study(out, "quick" if quick else "full", log=typer.echo))


def _dense_study(name: str, out: Path, preset: str) -> None:
    """Run one of the dense studies (segmentation, change, hyperspectral) with a checked preset."""
    import importlib

    module = importlib.import_module(f"eossl.studies.{name}")
    if preset not in module.PRESETS:
        _fail(f"--preset '{preset}' is not one of {', '.join(module.PRESETS)}")
    _guarded(lambda: getattr(module, f"run_{name}_study")(out, preset, log=typer.echo))


@study_app.command("segmentation")
def study_segmentation(
    out: Path = typer.Option(Path("runs/segmentation"), help="study folder (an interrupted study resumes)"),
    preset: str = typer.Option("quick", help="quick (about 20 min on 2 CPU cores, no ResNet-50 rows), full or test"),
) -> None:
    """UNet / DeepLabV3+ / UpConv x ResNet-18/50 / ViT-S x random / SimCLR / MoCo / DINO; detail-preserving
    ResNet and boundary loss."""
    _dense_study("segmentation", out, preset)


@study_app.command("change")
def study_change(
    out: Path = typer.Option(Path("runs/change"), help="study folder (an interrupted study resumes)"),
    preset: str = typer.Option("quick", help="quick (about 10 min on 2 CPU cores), full or test"),
) -> None:
    """Change detection: random vs SimCLR / MoCo / SeCo, early fusion vs FC-Siam-diff, 10% and 100% of places."""
    _dense_study("change", out, preset)


@study_app.command("hyperspectral")
def study_hyperspectral(
    out: Path = typer.Option(Path("runs/hyperspectral"), help="study folder (an interrupted study resumes)"),
    preset: str = typer.Option("quick", help="quick (about 15 min on 2 CPU cores), full or test"),
) -> None:
    """Spectral-adapter ResNet and wavelength-conditioned ViT on the EnMAP-like cube: frozen / fine-tune / adapter."""
    _dense_study("hyperspectral", out, preset)


@study_app.command("label-efficiency")
def study_label_efficiency(
    out: Path = typer.Option(Path("runs/label-efficiency"), help="study folder (an interrupted study resumes)"),
    preset: str = typer.Option(
        "small", help="full (400/1,600/6,400 steps), small (100/400 steps, ~1.5 h on 2 cores), test"
    ),
    store: Path = typer.Option(None, help="an existing store to study (default: the preset's synthetic Earth)"),
    task: str = typer.Option("single-label", help="target name or kind of the store to fine-tune and probe"),
    modality: str = typer.Option("s2", help="the store's modality to pretrain and evaluate on"),
    budget: list[int] = typer.Option(None, help="pretraining steps to study (repeat; default: the preset's)"),
) -> None:
    """Pretraining budgets x label fractions x seeds against a converged from-scratch reference, and a
    verdict on "10% pretrained >= 100% from scratch"."""
    from eossl.errors import ConfigError
    from eossl.studies.label_efficiency import PRESETS, run_label_efficiency_study

    def run() -> None:
        if preset not in PRESETS:
            raise ConfigError(f"--preset '{preset}' is not one of {', '.join(PRESETS)}")
        run_label_efficiency_study(out, preset, store, task, modality, log=typer.echo, budgets=budget or None)

    _guarded(run)


@app.command()
def bench(
    quick: bool = typer.Option(False, "--quick", help="small sizes (seconds)"),
    store: Path = typer.Option(None, help="existing store to read (default: a fresh synthetic one)"),
    method: list[str] = typer.Option(["simclr"], help="method(s) whose training step is timed; 'all' for every one"),
    dense: bool = typer.Option(False, "--dense", help="time encoder x decoder segmentation steps instead"),
    pair: list[str] = typer.Option([], help="with --dense: ENCODER:DECODER pairs (default: the standard set)"),
    bands: int = typer.Option(12, help="with --dense: input bands"),
) -> None:
    """Throughput of synthetic generation, store reads and pretraining steps (``--dense``: throughput and
    memory of encoder x decoder training steps)."""
    from eossl.bench import run_benchmarks, run_dense_benchmarks
    from eossl.methods import METHODS

    if dense:
        malformed = [p for p in pair if p.count(":") != 1]
        if malformed:
            _fail(f"--pair: expected ENCODER:DECODER, got {malformed}")
        pairs = [tuple(p.split(":")) for p in pair] or None
        _guarded(lambda: typer.echo(run_dense_benchmarks(quick=quick, pairs=pairs, bands=bands)))
        return

    names = METHODS.names() if method == ["all"] else method
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        _fail(f"--method: unknown {unknown} (available: all, {', '.join(METHODS.names())})")
    _guarded(lambda: typer.echo(run_benchmarks(quick=quick, store=store, methods=names)))


from eossl.cli import deploy as _deploy  # noqa: E402, F401  (registers export, finetune, predict, embed)
from eossl.cli import views as _views  # noqa: E402, F401  (registers views plan, build, synth)


def main() -> None:  # pragma: no cover - console entry point
    app(sys.argv[1:])
