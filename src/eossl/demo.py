"""``eossl demo``: synthetic Earth -> SimCLR pretraining -> evaluation -> label-efficiency table.

Two presets: ``full`` (the README's numbers, about 10 minutes on a 2-core CPU) and ``quick`` (same
path on tiny settings, under 2 minutes, exercised by the test suite).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from eossl.config import EvaluateConfig, PretrainConfig, validate_config
from eossl.data.store import SampleStore
from eossl.data.synth.generator import SynthSpec, synthesize_store
from eossl.evaluation.report import comparisons, summarise, table
from eossl.evaluation.runner import run_evaluate
from eossl.methods.pretrain import run_pretrain

PRESETS = {
    "full": {
        "synth": SynthSpec(num_locations=2500, seasons=4, patch_size=32, seed=0),
        "pretrain": {
            "data": {"batch_size": 128},
            "trainer": {"max_steps": 400, "max_epochs": 1000},
            "health": {"knn_every_n_steps": 200},
        },
        "evaluate": {
            "fractions": [0.01, 0.1, 1.0],
            "seeds": [0, 1, 2],
            "finetune": {
                "tasks": ["single-label"],
                "min_steps": 40,
                "max_steps": 40,
                "batch_size": 32,
                "validations": 4,
                "patience": 0,
            },
        },
    },
    "quick": {
        "synth": SynthSpec(num_locations=150, seasons=4, patch_size=32, seed=0),
        "pretrain": {
            "data": {"batch_size": 64},
            "trainer": {"max_steps": 12, "max_epochs": 1000},
            "health": {"knn_every_n_steps": 0, "knn_bank_size": 300, "knn_query_size": 200},
        },
        "evaluate": {
            "fractions": [0.1, 1.0],
            "seeds": [0, 1, 2],
            "linear": {"weight_decays": [1e-3, 1e-1], "max_iter": 50},
            "finetune": {
                "tasks": ["single-label"],
                "min_steps": 3,
                "max_steps": 3,
                "batch_size": 32,
                "validations": 1,
                "patience": 0,
            },
        },
    },
}


def verdict_lines(results: pd.DataFrame, fraction: float = 0.1) -> list[str]:
    """Paired comparisons of the linear probes at ``fraction`` labels, one readable line each."""
    comps = comparisons(results)
    lines = []
    for r in comps[(comps.protocol == "linear") & (comps.fraction.round(6) == round(fraction, 6))].itertuples():
        verdict = {"A better": f"{r.a} better", "B better": f"{r.b} better"}.get(r.verdict, r.verdict)
        lines.append(
            f"{r.task}, linear probe at {fraction:.0%} labels, {r.a} - {r.b}: {r.difference:+.3f} "
            f"[{r.low:+.3f}, {r.high:+.3f}] over {r.n} paired seeds -> {verdict} (p={r.p_value:.2g})"
        )
    return lines


def _store_for(path: Path, spec: SynthSpec, log) -> Path:
    if path.exists():
        try:
            if SampleStore(path).attrs.get("synth_spec") == asdict(spec):
                log(f"reusing synthetic store {path}")
                return path
        except Exception:  # an unreadable or foreign folder is regenerated below
            pass
    log(f"generating synthetic Earth: {spec.num_locations} locations x {spec.seasons} seasons -> {path}")
    started = time.perf_counter()
    synthesize_store(path, spec, overwrite=True)
    log(f"  {spec.num_samples} samples in {time.perf_counter() - started:.0f}s")
    return path


def run_demo(out: Path = Path("runs/demo"), quick: bool = False, log=print) -> pd.DataFrame:
    preset = PRESETS["quick" if quick else "full"]
    out = Path(out)
    started = time.perf_counter()
    store = _store_for(out / "store", preset["synth"], log)
    data = {"store": str(store), "modality": "s2"}
    pretrain_raw = {
        **preset["pretrain"],
        "out": str(out / "pretrain"),
        "data": {**data, **preset["pretrain"]["data"]},
        "trainer": {**preset["pretrain"]["trainer"], "progress_bar": True},
    }
    pretrain_cfg: PretrainConfig = validate_config(PretrainConfig, pretrain_raw, "demo preset")
    log(
        f"pretraining SimCLR ({pretrain_cfg.encoder.name}, {pretrain_cfg.trainer.max_steps} steps of "
        f"{pretrain_cfg.data.batch_size})"
    )
    checkpoint = run_pretrain(pretrain_cfg)
    summary = json.loads((out / "pretrain" / "summary.json").read_text())
    log(
        f"  {summary['steps']} steps in {summary['seconds']:.0f}s ({summary['samples_per_second']:.0f} samples/s "
        f"on {summary['device']}), final loss {summary['final_loss']:.3f}"
    )
    health = summary["health"]
    knn = ", ".join(f"step {k['step']}: {k['accuracy']:.3f}" for k in health["knn_accuracy"])
    log(
        f"  health: std*sqrt(d) {health['last']['std']:.2f}, effective rank {health['last']['rank']:.1f}, "
        f"online kNN accuracy on val {knn or 'n/a'}; collapse warnings: {len(health['collapse_warnings'])}"
    )
    eval_cfg: EvaluateConfig = validate_config(
        EvaluateConfig,
        {**preset["evaluate"], "out": str(out / "evaluate"), "data": data, "checkpoint": str(checkpoint)},
        "demo preset",
    )
    log("evaluating: kNN, linear probe and fine-tuning x label fractions x seeds")
    results = run_evaluate(eval_cfg, log=log)
    summary_table = summarise(results)
    for task, metric in (("single-label", "accuracy"), ("multi-label", "mAP")):
        text = table(summary_table, task, metric)
        if text:
            log(f"\n{task} {metric} (test split, mean ± std over {len(eval_cfg.seeds)} seeds)\n{text}")
    log("")
    for line in verdict_lines(results):
        log(line)
    log(f"\nreport: {out / 'evaluate' / 'report.md'} ({time.perf_counter() - started:.0f}s in total)")
    return results
