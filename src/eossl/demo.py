"""``eossl demo``: synthetic Earth -> SimCLR pretraining -> evaluation -> label-efficiency table.

Two presets: ``full`` (the README's numbers, about 10 minutes on a 2-core CPU) and ``quick`` (same
path on tiny settings, under 2 minutes, exercised by the test suite). The headline compares inits at
equal labels under the budget rule; it states labels saved only against a converged from-scratch
reference, which the demo's budget does not include (``eossl study label-efficiency`` measures it).
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
from eossl.evaluation.efficiency import headlines, labels_saved_table, missing_reference_line
from eossl.evaluation.report import comparisons, summarise, table
from eossl.evaluation.runner import run_evaluate
from eossl.methods.pretrain import run_pretrain

PRESETS = {
    "full": {
        "synth": SynthSpec(num_locations=2500, seasons=4, patch_size=32, seed=0),
        "pretrain": {
            "data": {"batch_size": 128},
            "trainer": {"max_steps": 300, "max_epochs": 1000},
            "health": {"knn_every_n_steps": 150},
        },
        "evaluate": {
            "fractions": [0.01, 0.1, 1.0],
            "seeds": [0, 1, 2],
            # the budget rule's defaults (30 epochs, at least 100 steps, learning rates chosen per init on
            # validation, early stopping not before half the budget) at 1% labels only: the 10-minute budget
            "finetune": {"tasks": ["single-label"], "fractions": [0.01]},
        },
        "headline": [("finetune", 0.01), ("linear", 0.01), ("linear", 0.1)],
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
                "fractions": [0.1],
                "epochs": 1,
                "min_steps": 3,
                "max_steps": 3,
                "batch_size": 32,
                "validations": 1,
                "patience": 0,
            },
        },
        "headline": [("finetune", 0.1), ("linear", 0.1)],
    },
}


def verdict_lines(results: pd.DataFrame, picks: list[tuple[str, float]]) -> list[str]:
    """Paired comparisons at equal labels, one readable line per task, pretrained init and baseline, for
    each ``(protocol, fraction)`` of ``picks``."""
    comps = comparisons(results)
    lines = []
    for protocol, fraction in picks:
        if comps.empty:
            break
        chosen = comps[(comps.protocol == protocol) & (comps.fraction.round(6) == round(fraction, 6))]
        name = {"linear": "linear probe", "finetune": "fine-tuned"}.get(protocol, protocol)
        for r in chosen.itertuples():
            verdict = {"A better": f"{r.a} better", "B better": f"{r.b} better"}.get(r.verdict, r.verdict)
            lines.append(
                f"{r.task}, {name} at {fraction:.0%} labels, {r.a} - {r.b}: {r.difference:+.3f} "
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
    log(
        "evaluating: kNN and linear probe x label fractions x seeds; fine-tuning under the budget rule at "
        f"{', '.join(f'{f:.0%}' for f in eval_cfg.finetune.fractions or eval_cfg.fractions)} labels"
    )
    results = run_evaluate(eval_cfg, log=log)
    summary_table = summarise(results)
    for task, metric in (("single-label", "accuracy"), ("multi-label", "mAP")):
        text = table(summary_table, task, metric)
        if text:
            log(f"\n{task} {metric} (test split, mean ± std over {len(eval_cfg.seeds)} seeds)\n{text}")
    log("\nat equal labels, one budget rule for every init:")
    for line in verdict_lines(results, preset["headline"]):
        log(line)
    saved = labels_saved_table(results)
    log("")
    for line in headlines(saved) if not saved.empty else [missing_reference_line(results)]:
        log(line.removeprefix("- "))
    log(f"\nreport: {out / 'evaluate' / 'report.md'} ({time.perf_counter() - started:.0f}s in total)")
    return results
