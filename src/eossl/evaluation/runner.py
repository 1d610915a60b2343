"""``eossl evaluate``: every init x protocol x task x label fraction x seed on the same splits.

The runner only sequences the units: the plan is checked (:mod:`eossl.evaluation.plan`), the data
opened (:mod:`eossl.evaluation.data`, streamed from the store), the labelled subsets drawn
(:mod:`eossl.evaluation.subsets`), then for every modality setting and init of
:data:`~eossl.evaluation.registry.INITS` each enabled protocol of
:data:`~eossl.evaluation.registry.PROTOCOLS` runs and writes its rows (:mod:`eossl.evaluation.sink`).
Finally the report is written (:mod:`eossl.evaluation.report`).

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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch

from eossl.checkpoints import PretrainedEncoder, load_pretrained_encoders
from eossl.evaluation.context import Evaluation
from eossl.evaluation.data import EvalData
from eossl.evaluation.inits._base import Init
from eossl.evaluation.inits.checkpoint import with_pair_dates
from eossl.evaluation.plan import check_plan
from eossl.evaluation.protocols._base import Protocol
from eossl.evaluation.registry import INITS
from eossl.evaluation.report import write_report
from eossl.evaluation.sink import ResultSink, Setting
from eossl.evaluation.subsets import LabelSubsets
from eossl.io import write_yaml_atomic
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


def _evaluate_init(evaluation: Evaluation, init: Init, setting: Setting, protocols: list[Protocol]) -> None:
    """Every enabled protocol for one init of one setting."""
    run = init.start(setting, evaluation)
    for protocol in protocols:
        if run.encoder is not None or not protocol.needs_encoder:
            protocol.run(run)
    evaluation.sink.flush()


def run_evaluate(cfg: EvaluateBase, log: Callable[[str], None] = print) -> pd.DataFrame:
    """Run the whole grid; write ``results.csv``, ``curves.csv``, ``label_subsets.json``, the report and
    its plots into ``cfg.out``."""
    quiet_lightning()
    inits = [INITS[name](cfg, {}) for name in cfg.inits]
    for init in inits:
        init.check()
    data = EvalData(cfg)
    # a checkpoint decides the architecture: the plan is checked without it first, then with its encoder
    protocols = check_plan(cfg, data, None if "checkpoint" in cfg.inits else cfg.encoder.name)
    subsets = LabelSubsets(data.store, data.splits["train"], data.tasks, cfg.fractions, cfg.seeds)
    pretrained = with_pair_dates(_pretrained(cfg), data.pairs.values(), "early" in cfg.fusion.dates_modes)
    if pretrained:
        inits = [INITS[name](cfg, pretrained) for name in cfg.inits]
        protocols = check_plan(cfg, data, next(iter(pretrained.values())).encoder_name)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_yaml_atomic(out / "config.yaml", cfg.model_dump(mode="json"))
    subsets.save(out / "label_subsets.json", cfg.data.split_seed)
    device = default_device() if cfg.accelerator == "auto" else torch.device(cfg.accelerator)
    sink = ResultSink(out, cfg.prediction_maps, cfg.seeds[0])
    evaluation = Evaluation(cfg, data, subsets, sink, device, log)
    for setting in settings(cfg, data):
        sink.setting = setting
        for init in inits:
            reason = init.unavailable(setting)
            if reason:
                log(f"  {setting.name} {setting.fusion}: init '{init.name}' skipped: {reason}")
                continue
            started = time.perf_counter()
            _evaluate_init(evaluation, init, setting, protocols)
            log(f"  {setting.name:<14} {init.label():<12} evaluated in {time.perf_counter() - started:.0f}s")
    results = sink.results()
    write_report(results, out, cfg)
    return results
