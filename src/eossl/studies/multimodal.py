"""``eossl study multimodal``: what co-located sensors, fusion and multi-task learning buy, in one command.

Stages (each writes its own folder under ``--out`` and is skipped when its result already exists, so
an interrupted study resumes):

1. ``store``: the synthetic Earth (S2, S1, DEM, land cover; season and climate zone in the table).
2. ``pretrain-simclr`` (S2 alone, augmented views) and ``pretrain-dual-simclr`` (S2 + S1, co-located
   patches as positives, one encoder per sensor, no augmentation), with the same steps and batch.
3. (a) ``eval-simclr`` / ``eval-dual-simclr``: linear probe and fine-tuning at 1/10/100% labels on
   S2 alone, plus late fusion S2+S1 for Dual-SimCLR against a random init of the same shape.
4. (b) ``fusion``: every combination of s2, s1, dem and metadata planes (season, climate zone) up to
   three, early and late fusion, trained from scratch on every label (the ben-ge fusion table), with
   sensor dropout while training and a test with S1 missing.
5. (c) ``multitask``: multi-label + segmentation + tree-cover regression with one encoder and
   uncertainty weighting, against single-task fine-tuning, from the SimCLR encoder and from scratch.

``study.md`` collects the three tables; each stage folder also holds its full report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from eossl.config import EvaluateConfig, PretrainConfig, validate_config
from eossl.data.synth.generator import SynthSpec, synthesize_store
from eossl.evaluation.report import (
    fusion_table,
    label_settings,
    multitask_comparisons,
    multitask_section,
    summarise,
    table,
    write_report,
)
from eossl.evaluation.results import load_results, merge_runs
from eossl.evaluation.runner import run_evaluate
from eossl.io import write_text_atomic
from eossl.methods.pretrain import run_pretrain

FUSION_FRACTION = 1.0
PRESETS: dict[str, dict[str, Any]] = {
    "full": {
        "synth": SynthSpec(num_locations=2500, seasons=4, patch_size=32, seed=0),
        "pretrain": {
            "data": {"batch_size": 128},
            "trainer": {"max_steps": 400, "max_epochs": 1000},
            "health": {"knn_every_n_steps": 200},
        },
        "trained": {"min_steps": 40, "max_steps": 40, "batch_size": 32, "validations": 4, "patience": 0},
        "fusion_trained": {"min_steps": 40, "max_steps": 40, "batch_size": 64, "validations": 2, "patience": 0},
        "seeds": [0, 1, 2],
        "fusion_seeds": [0, 1],
        "fractions": [0.01, 0.1, 1.0],
        "multitask_fractions": [0.1, 1.0],
        "fusion_candidates": ["s2", "s1", "dem", "meta"],
        "fusion_sizes": [1, 2, 3],
    },
    "quick": {
        "synth": SynthSpec(num_locations=150, seasons=4, patch_size=32, seed=0),
        "pretrain": {
            "data": {"batch_size": 32},
            "trainer": {"max_steps": 4, "max_epochs": 1000},
            "health": {"knn_every_n_steps": 0, "knn_bank_size": 200, "knn_query_size": 100},
        },
        "trained": {"min_steps": 2, "max_steps": 2, "batch_size": 16, "validations": 1, "patience": 0},
        "fusion_trained": {"min_steps": 2, "max_steps": 2, "batch_size": 16, "validations": 1, "patience": 0},
        "seeds": [0, 1],
        "fusion_seeds": [0],
        "fractions": [0.1, 1.0],
        "multitask_fractions": [1.0],
        "fusion_candidates": ["s2", "s1", "dem", "meta"],
        "fusion_sizes": [1, 2, 3],
    },
}
# the test suite's preset: the same stages on the smallest settings that still exercise every code path
PRESETS["test"] = {
    **PRESETS["quick"],
    "synth": SynthSpec(num_locations=40, seasons=4, patch_size=32, seed=0),
    "pretrain": {**PRESETS["quick"]["pretrain"], "trainer": {"max_steps": 2, "max_epochs": 1000}},
    "trained": {"min_steps": 1, "max_steps": 1, "batch_size": 16, "validations": 1, "patience": 0},
    "fusion_trained": {"min_steps": 1, "max_steps": 1, "batch_size": 16, "validations": 1, "patience": 0},
    "fractions": [0.5, 1.0],
    "seeds": [0],  # one seed: every stage, table and resume path still runs (the suite's time)
    "fusion_candidates": ["s2", "s1", "meta"],
    "fusion_sizes": [1, 2],
}


def _pretrain(out: Path, store: Path, preset: dict, method: dict, data: dict) -> Path:
    checkpoint = out / "checkpoints" / "last.ckpt"
    if checkpoint.exists():
        return checkpoint
    raw = {"out": str(out), "data": {"store": str(store), **preset["pretrain"]["data"], **data},
           "method": method, "trainer": {**preset["pretrain"]["trainer"], "progress_bar": False},
           "health": preset["pretrain"]["health"]}  # fmt: skip
    return run_pretrain(validate_config(PretrainConfig, raw, source=f"study config ({out.name})"))


def _evaluate(out: Path, store: Path, raw: dict, log: Callable[[str], None]) -> pd.DataFrame:
    if (out / "report.md").exists():
        return load_results(out)
    cfg = validate_config(EvaluateConfig, {"out": str(out), "data": {"store": str(store)}, **raw},
                          source=f"study config ({out.name})")  # fmt: skip
    return run_evaluate(cfg, log=log)


def _label_efficiency(results: pd.DataFrame, out: Path) -> str:
    """(a): the merged SimCLR / Dual-SimCLR / random runs, one table per task."""
    write_report(results, out)
    summary = summarise(label_settings(results))
    parts = []
    for task, metric in (("single-label", "accuracy"), ("multi-label", "mAP")):
        text = table(summary, task, metric)
        if text:
            parts += [f"#### {task} ({metric})", "", text, ""]
    return "\n".join(parts)


def run_multimodal_study(out: Path, preset: str = "full", log: Callable[[str], None] = print) -> Path:
    """Run (or resume) the study into ``out``; return the path of ``study.md``."""
    p, out = PRESETS[preset], Path(out)
    started = time.perf_counter()
    store = out / "store"
    if not store.exists():
        log(f"synthesising {p['synth'].num_samples} samples into {store}")
        synthesize_store(store, p["synth"])
    log("pretraining SimCLR (s2) and Dual-SimCLR (s2 + s1)")
    simclr = _pretrain(out / "pretrain-simclr", store, p, {"name": "simclr"}, {"modality": "s2"})
    dual = _pretrain(out / "pretrain-dual-simclr", store, p, {"name": "dual-simclr"}, {"modalities": ["s2", "s1"]})
    common = {"seeds": p["seeds"], "fractions": p["fractions"], "tasks": ["single-label", "multi-label"],
              "knn": {"enabled": False}, "finetune": {"tasks": ["single-label"], **p["trained"]},
              "prediction_maps": 0}  # fmt: skip
    log("(a) evaluating SimCLR and Dual-SimCLR encoders")
    _evaluate(out / "eval-simclr", store, {**common, "checkpoint": str(simclr), "inits": ["checkpoint"]}, log)
    fused = {"modalities": ["s2", "s2+s1"], "fusion": {"modes": ["late-concat"]}}
    _evaluate(out / "eval-dual-simclr", store, {**common, **fused, "checkpoint": str(dual),
                                                 "inits": ["checkpoint", "random"]}, log)  # fmt: skip
    merged, _ = merge_runs([out / "eval-simclr", out / "eval-dual-simclr"])
    efficiency = _label_efficiency(merged.drop(columns=["run"]), out / "label-efficiency")
    log("(b) modality-combination sweep")
    fusion = {"candidates": p["fusion_candidates"], "sizes": p["fusion_sizes"], "modes": ["early", "late-concat"],
              "metadata": ["season", "climate_zone"], "sensor_dropout": 0.25, "missing_at_test": ["s1"]}  # fmt: skip
    fusion_results = _evaluate(out / "fusion", store, {
        "modalities": "auto", "fusion": fusion, "inits": ["random"], "tasks": ["multi-label", "segmentation"],
        "fractions": [FUSION_FRACTION], "seeds": p["fusion_seeds"], "linear": {"enabled": False},
        "knn": {"enabled": False}, "finetune": p["fusion_trained"], "prediction_maps": 0}, log)  # fmt: skip
    log("(c) multi-task vs single-task")
    tasks = ["multi-label", "segmentation", "regression"]
    multitask_results = _evaluate(out / "multitask", store, {
        "checkpoint": str(simclr), "inits": ["checkpoint", "random"], "tasks": tasks,
        "fractions": p["multitask_fractions"], "seeds": p["seeds"], "linear": {"enabled": False},
        "knn": {"enabled": False}, "finetune": p["trained"], "prediction_maps": 0,
        "multitask": {"enabled": True, "tasks": tasks, "weighting": "uncertainty", **p["trained"]}}, log)  # fmt: skip
    multitask = multitask_section(multitask_comparisons(multitask_results))
    if multitask:
        multitask[0] = "## (c) Multi-task vs single-task"
    minutes = (time.perf_counter() - started) / 60
    lines = [
        "# Multi-modal, fused and multi-task learning on the synthetic Earth",
        "",
        f"`eossl study multimodal --out {out}` ({preset} preset; this run's last stage finished {minutes:.0f} min "
        "after it resumed). Cells: test-split mean ± std over seeds; full reports in each stage folder.",
        "",
        "## (a) Dual-SimCLR (s2 + s1) vs SimCLR (s2) vs random",
        "",
        efficiency,
        f"## (b) Modality combinations (from scratch, {FUSION_FRACTION:.0%} labels)",
        "",
        fusion_table(fusion_results, FUSION_FRACTION),
        "",
        *multitask,
    ]
    path = out / "study.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    log(f"wrote {path}")
    return path
