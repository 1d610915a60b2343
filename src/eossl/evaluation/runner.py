"""``eossl evaluate``: every init x protocol x task x label fraction x seed on the same splits.

The runner only sequences the units. Before anything is written or trained it takes the output
folder (:class:`~eossl.io.OutputLock`: a second evaluation into it fails at once; the folder must be
writable), opens the data (:mod:`eossl.evaluation.data`, streamed from the store; splits too small
fail here), checks the plan (:mod:`eossl.evaluation.plan`), draws the labelled subsets
(:mod:`eossl.evaluation.subsets`) and loads the checkpoint, whose encoders must take the bands of the
store modalities they are evaluated on. Then for every modality setting and init of
:data:`~eossl.evaluation.registry.INITS` each enabled protocol of
:data:`~eossl.evaluation.registry.PROTOCOLS` runs its cells (:class:`~eossl.evaluation.sink.Cell`),
and the results are written after each (:mod:`eossl.evaluation.sink`). An evaluation into a folder
holding results of the same config resumes after the cells done there (:mod:`eossl.evaluation.resume`).
Finally the report is written (:mod:`eossl.evaluation.report`) and ``summary.json`` says how many
non-finite input values were filled with band means.

Inits: ``checkpoint`` (the pretrained encoder, reported under its method's name, e.g. ``simclr``),
``random`` (same architecture, random weights), ``external`` (same architecture with a local timm
weights file, e.g. ImageNet; reported under ``external.label``) and ``image-stats`` (per-band
mean/std/percentiles; feature protocols only). Random and external encoders get their BatchNorm
statistics re-estimated on the unlabelled training images. Every protocol sees the same label subsets:
for each fraction and seed one nested, stratified subset per stratification target, saved to
``label_subsets.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch

from eossl.checkpoints import PretrainedEncoder, load_pretrained_encoders
from eossl.errors import EosslError
from eossl.evaluation.context import CellScope, Evaluation
from eossl.evaluation.data import EvalData
from eossl.evaluation.inits._base import Init
from eossl.evaluation.inits.checkpoint import with_pair_dates
from eossl.evaluation.plan import check_plan
from eossl.evaluation.protocols._base import Protocol
from eossl.evaluation.registry import INITS
from eossl.evaluation.report import write_report
from eossl.evaluation.resume import count_done, previous_results, sources
from eossl.evaluation.sink import Cell, ResultSink, Setting
from eossl.evaluation.subsets import LabelSubsets
from eossl.io import LOCK_FILE, OutputLock, write_yaml_atomic
from eossl.training import default_device, quiet_lightning

if TYPE_CHECKING:
    from eossl.evaluation.config import EvaluateBase


def settings(cfg: EvaluateBase, data: EvalData) -> list[Setting]:
    """Single modalities unfused, then every combination once per fusion mode (the two dates of a
    change task's pair once per ``fusion.dates_modes``)."""
    combos = data.combos
    fused = []
    for combo in (c for c in combos if len(c) > 1):
        pair = data.pair_of(combo)
        modes = cfg.fusion.dates_modes if pair is not None else cfg.fusion.modes
        fused += [Setting(combo, mode, pair.name if pair is not None else None) for mode in modes]
    return [Setting(c) for c in combos if len(c) == 1] + fused


def _pretrained(cfg: EvaluateBase) -> dict[str, PretrainedEncoder]:
    return load_pretrained_encoders(cfg.checkpoint) if "checkpoint" in cfg.inits and cfg.checkpoint else {}


@dataclass
class Unit:
    """One init on one setting: why it cannot be built (``skipped``), or each protocol it runs with its cells."""

    setting: Setting
    init: Init
    skipped: str | None = None
    cells: dict[Protocol, list[Cell]] = field(default_factory=dict)


def plan_units(evaluation: Evaluation, inits: list[Init], protocols: list[Protocol]) -> list[Unit]:
    """Every init on every setting, in evaluation order, with the cells each protocol will measure."""
    units = []
    for setting in settings(evaluation.cfg, evaluation.data):
        for init in inits:
            reason = init.unavailable(setting)
            if reason:
                units.append(Unit(setting, init, reason))
                continue
            scope = CellScope(evaluation, setting, init.label())
            active = [p for p in protocols if init.encodes or not p.needs_encoder]
            units.append(Unit(setting, init, cells={p: p.cells(scope) for p in active}))
    return units


@contextmanager
def _output_folder(out: Path) -> Iterator[None]:
    """Hold ``out`` (writable, locked) for the block; when the block fails before writing anything but
    the lock, the folders this created are removed again."""
    created = [p for p in (out, *out.parents) if not p.exists()]
    with OutputLock(out, "eossl evaluate") as lock:
        try:
            yield
        except EosslError:
            if created and [p.name for p in out.iterdir()] == [LOCK_FILE]:
                lock.path.unlink(missing_ok=True)  # still held: a process waiting on it gets the usual error
                for folder in created:
                    try:
                        folder.rmdir()
                    except OSError:
                        break
            raise


def _prepare(cfg: EvaluateBase, inits: list[Init]) -> tuple[EvalData, list[Protocol], LabelSubsets, list[Init]]:
    """Everything that can fail on the inputs, before any work: data and splits, the plan, the label
    subsets, the checkpoint and the bands its encoders take."""
    data = EvalData(cfg)
    # a checkpoint decides the architecture: the plan is checked without it first, then with its encoder
    protocols = check_plan(cfg, data, None if "checkpoint" in cfg.inits else cfg.encoder.name)
    subsets = LabelSubsets(data.store, data.splits["train"], data.tasks, cfg.fractions, cfg.seeds)
    pretrained = with_pair_dates(_pretrained(cfg), data.pairs.values(), "early" in cfg.fusion.dates_modes)
    if pretrained:
        inits = [INITS[name](cfg, pretrained) for name in cfg.inits]
        protocols = check_plan(cfg, data, next(iter(pretrained.values())).encoder_name)
    for init in inits:
        init.check_data(data)
    return data, protocols, subsets, inits


def _run_unit(evaluation: Evaluation, unit: Unit) -> None:
    """The protocols of one init on one setting that have cells left (the init is built only then)."""
    pending = [p for p, cells in unit.cells.items() if count_done(cells, evaluation.done) < len(cells)]
    if not pending:
        return
    started = time.perf_counter()
    run = unit.init.start(unit.setting, evaluation)
    for protocol in pending:
        protocol.run(run)
    evaluation.count_filled(run.normalizer)
    evaluation.log(
        f"  {unit.setting.name:<14} {unit.init.label():<12} evaluated in {time.perf_counter() - started:.0f}s"
    )


def run_evaluate(cfg: EvaluateBase, log: Callable[[str], None] = print) -> pd.DataFrame:
    """Run the whole grid (resuming after the cells done in ``cfg.out`` by an evaluation of the same
    config); write ``results.csv``, ``curves.csv``, ``label_subsets.json``, ``summary.json``, the report
    and its plots into ``cfg.out``."""
    quiet_lightning()
    inits = [INITS[name](cfg, {}) for name in cfg.inits]
    for init in inits:
        init.check()
    out = Path(cfg.out)
    with _output_folder(out):
        data, protocols, subsets, inits = _prepare(cfg, inits)
        device = default_device() if cfg.accelerator == "auto" else torch.device(cfg.accelerator)
        sink = ResultSink(out, cfg.prediction_maps, cfg.seeds[0])
        evaluation = Evaluation(cfg, data, subsets, sink, device, log)
        units = plan_units(evaluation, inits, protocols)
        planned = [c for unit in units for cells in unit.cells.values() for c in cells]
        config = cfg.model_dump(mode="json")
        found = sources(cfg.data.store, {init.name: init.source() for init in inits})
        previous = previous_results(out, config, found, log)
        if previous is not None:
            sink.rows, sink.curves = previous.rows, previous.curves
            evaluation.done, evaluation.recorded_rates = previous.done, previous.rates
            evaluation.filled = previous.filled
            log(f"resuming: {count_done(planned, previous.done)} of {len(planned)} cells done in {out}")
        evaluation.manifest = {"sources": found, "cells_planned": len(planned)}
        evaluation.completed([])  # first: results of a replaced evaluation never sit beside this config
        write_yaml_atomic(out / "config.yaml", config)
        subsets.save(out / "label_subsets.json", cfg.data.split_seed)
        for unit in units:
            sink.setting = unit.setting
            if unit.skipped:
                log(f"  {unit.setting.name} {unit.setting.fusion}: init '{unit.init.name}' skipped: {unit.skipped}")
                continue
            _run_unit(evaluation, unit)
        evaluation.completed([])
        for name, count in evaluation.filled.items():
            if count:
                log(f"warning: filled {count} non-finite input values of '{name}' with band means (see summary.json)")
        results = sink.results()
        write_report(results, out, cfg)
    return results
