"""``eossl study label-efficiency``: does pretraining save labels, and how many per unit of pretraining compute?

Puts the source documents' headline claim to the test: *an encoder pretrained without labels and
fine-tuned on 10% of the labels matches or beats the same architecture trained from scratch on 100%*.

Stages (each writes its own folder under ``--out`` and is skipped when its result already exists, so
an interrupted study resumes):

1. ``store``: the synthetic Earth of the preset, or ``--store`` (any store with the task's target).
2. ``pretrain-N``: SimCLR pretrained for each budget N of optimiser steps, same batch for all.
3. ``eval-scratch``: the random init, linear probe and fine-tuning at every label fraction and seed,
   under the budget rule (:mod:`eossl.evaluation.budget`).
4. ``reference-E-epochs``: the from-scratch reference, fine-tuning on 100% of the labels trained until
   its validation metric stops improving: when ``eval-scratch``'s 100% runs had not converged on every
   seed, the epochs are doubled (at the rates ``eval-scratch`` chose on validation) until they have, up
   to the preset's ``reference_max_epochs``. Its rows replace ``eval-scratch``'s 100% fine-tuning rows.
5. ``eval-N``: the same protocols, fractions, seeds and budget rule from each pretrained encoder.

``study.md`` collects: the pretraining compute, the label-efficiency curves per pretraining budget,
labels saved per budget and protocol against the converged reference (refused when it had not
converged) and the verdict on the claim; ``report/`` is the full evaluation report of all runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from eossl.config import EvaluateConfig, PretrainConfig, validate_config
from eossl.data.store import SampleStore
from eossl.data.synth.generator import SynthSpec, synthesize_store
from eossl.errors import ConfigError
from eossl.evaluation.efficiency import REFERENCE_PROTOCOL, headlines, labels_saved_table, needed_text, not_converged
from eossl.evaluation.report import summarise, table, write_report
from eossl.evaluation.results import load_results, primary_metric, task_kinds, write_csv_atomic
from eossl.io import write_text_atomic
from eossl.methods.pretrain import run_pretrain
from eossl.studies.claim import claim_verdicts, plot_saved_vs_compute, plot_study_curves

CLAIM_FRACTION = 0.1
TRAINED = {"epochs": 30, "min_steps": 100, "batch_size": 64, "validations": 10, "patience": 3}
PRESETS: dict[str, dict[str, Any]] = {
    # the study: hours on a 2-core CPU, minutes on a GPU
    "full": {
        "synth": SynthSpec(num_locations=2500, seasons=4, patch_size=32, seed=0),
        "budgets": [400, 1600, 6400],
        "pretrain_batch": 128,
        "fractions": [0.01, 0.05, 0.1, 0.25, 0.5, 1.0],
        "seeds": [0, 1, 2],
        "trained": TRAINED,
        "reference_max_epochs": 240,
    },
    # what a 2-core CPU runs in about an hour and a half: a fifth of the store, two pretraining budgets 4x apart
    "small": {
        "synth": SynthSpec(num_locations=500, seasons=4, patch_size=32, seed=0),
        "budgets": [100, 400],
        "pretrain_batch": 64,
        "fractions": [0.01, 0.05, 0.1, 0.25, 1.0],
        "seeds": [0, 1, 2],
        "trained": {**TRAINED, "epochs": 20, "min_steps": 60},
        "reference_max_epochs": 40,
    },
    # the test suite's: every stage on the smallest settings
    "test": {
        "synth": SynthSpec(num_locations=40, seasons=4, patch_size=32, seed=0),
        "budgets": [2, 4],
        "pretrain_batch": 16,
        "fractions": [0.1, 1.0],
        "seeds": [0, 1],
        "trained": {"epochs": 1, "min_steps": 3, "batch_size": 16, "validations": 3, "patience": 1},
        "reference_max_epochs": 4,
    },
}


def _store(out: Path, preset: dict, store: Path | None, log: Callable[[str], None]) -> Path:
    if store is not None:
        SampleStore(store)  # a clear StoreError now rather than after pretraining
        return Path(store)
    path = out / "store"
    if not path.exists():
        log(f"synthesising {preset['synth'].num_samples} samples into {path}")
        synthesize_store(path, preset["synth"])
    return path


def _pretrain(out: Path, store: Path, preset: dict, steps: int, modality: str) -> dict:
    """Pretrain SimCLR for ``steps`` (once); its summary (steps, seconds, device) plus the checkpoint."""
    summary_path = out / "summary.json"
    if not summary_path.exists():
        data = {"store": str(store), "modality": modality, "batch_size": preset["pretrain_batch"]}
        trainer = {"max_steps": steps, "max_epochs": 100_000, "progress_bar": False}
        raw = {"out": str(out), "data": data, "method": {"name": "simclr"}, "trainer": trainer,
               "health": {"knn_every_n_steps": 0}}  # fmt: skip
        run_pretrain(validate_config(PretrainConfig, raw, source=f"study config ({out.name})"))
    return json.loads(summary_path.read_text())


def _evaluate(out: Path, raw: dict, log: Callable[[str], None]) -> pd.DataFrame:
    if (out / "report.md").exists():
        return load_results(out)
    from eossl.evaluation.runner import run_evaluate

    return run_evaluate(validate_config(EvaluateConfig, {"out": str(out), **raw}, source=f"study config ({out.name})"),
                        log=log)  # fmt: skip


def _curves(run: Path, init: str | None = None) -> pd.DataFrame:
    """The learning curves of one evaluation stage, its init renamed like its results."""
    path = run / "curves.csv"
    curves = pd.read_csv(path) if path.exists() else pd.DataFrame()
    return curves.assign(init=init) if init is not None and not curves.empty else curves


def _reference_curves(out: Path, scratch: pd.DataFrame) -> pd.DataFrame:
    """``eval-scratch``'s learning curves, its 100% fine-tuning curves replaced by the reference's."""
    curves = _curves(out / "eval-scratch")
    if "reference_epochs" not in scratch or scratch.reference_epochs.isna().all() or curves.empty:
        return curves
    epochs = int(scratch.reference_epochs.max())
    keep = ~((curves.protocol == REFERENCE_PROTOCOL) & (curves.fraction == 1.0))
    return pd.concat([curves[keep], _curves(out / f"reference-{epochs}-epochs")], ignore_index=True)


def _converged(rows: pd.DataFrame) -> bool:
    return bool(len(rows)) and not not_converged(rows.converged).any() and rows.converged.notna().all()


def _reference(out: Path, common: dict, p: dict, scratch: pd.DataFrame, log: Callable[[str], None]) -> pd.DataFrame:
    """The from-scratch 100% fine-tuning rows, trained longer (epochs doubled) until every seed converged."""
    is_reference = (scratch.protocol == REFERENCE_PROTOCOL) & (scratch.fraction == 1.0)
    rows, epochs = scratch[is_reference], p["trained"]["epochs"]
    chosen = rows.iloc[0] if len(rows) else None
    while chosen is not None and not _converged(rows) and epochs * 2 <= p["reference_max_epochs"]:
        epochs *= 2
        log(f"from scratch on 100% had not converged on every seed: training the reference for {epochs} epochs")
        trained = {**p["trained"], "epochs": epochs, "lr": [float(chosen.lr)],
                   "encoder_lr_factor": [float(chosen.encoder_lr_factor)]}  # fmt: skip
        raw = {**common, "inits": ["random"], "fractions": [1.0], "linear": {"enabled": False}, "finetune": trained}
        rows = _evaluate(out / f"reference-{epochs}-epochs", raw, log).assign(reference_epochs=epochs)
    return pd.concat([scratch[~is_reference], rows], ignore_index=True)


def run_label_efficiency_study(out: Path, preset: str = "small", store: Path | None = None, task: str = "single-label",
                               modality: str = "s2", log: Callable[[str], None] = print,
                               budgets: list[int] | None = None) -> Path:  # fmt: skip
    """Run (or resume) the study into ``out``; return the path of ``study.md``. ``budgets``: pretraining
    steps to study instead of the preset's."""
    p, out = PRESETS[preset], Path(out)
    if budgets:
        if any(b < 1 for b in budgets):
            raise ConfigError(f"pretraining budgets must be positive numbers of steps, got {budgets}")
        p = {**p, "budgets": sorted(set(budgets))}
    started = time.perf_counter()
    store = _store(out, p, store, log)
    common = {"data": {"store": str(store), "modality": modality, "in_memory": "auto"}, "tasks": [task],
              "fractions": p["fractions"], "seeds": p["seeds"], "knn": {"enabled": False}, "prediction_maps": 0,
              "finetune": p["trained"]}  # fmt: skip
    log("from scratch: linear probe and fine-tuning at every fraction")
    scratch = _reference(out, common, p, _evaluate(out / "eval-scratch", {**common, "inits": ["random"]}, log), log)
    frames, curves = [scratch], [_reference_curves(out, scratch)]
    compute = []
    for steps in p["budgets"]:
        log(f"pretraining SimCLR for {steps} steps of {p['pretrain_batch']}")
        summary = _pretrain(out / f"pretrain-{steps}", store, p, steps, modality)
        compute.append({"init": f"simclr-{steps}", "steps": summary["steps"], "batch": p["pretrain_batch"],
                        "seconds": summary["seconds"], "device": summary["device"]})  # fmt: skip
        log(f"  {summary['steps']} steps in {summary['seconds']:.0f}s on {summary['device']}; evaluating")
        raw = {**common, "inits": ["checkpoint"], "checkpoint": summary["checkpoint"]}
        frames.append(_evaluate(out / f"eval-{steps}", raw, log).assign(init=f"simclr-{steps}"))
        curves.append(_curves(out / f"eval-{steps}", f"simclr-{steps}"))
    results = pd.concat(frames, ignore_index=True)
    (out / "report").mkdir(parents=True, exist_ok=True)
    write_csv_atomic(pd.concat(curves, ignore_index=True), out / "report" / "curves.csv")
    write_report(results, out / "report")
    compute = pd.DataFrame(compute)
    minutes = (time.perf_counter() - started) / 60
    path = out / "study.md"
    write_text_atomic(path, study_markdown(results, compute, out, preset, minutes))
    log(f"wrote {path}")
    return path


def study_markdown(results: pd.DataFrame, compute: pd.DataFrame, out: Path, preset: str, minutes: float) -> str:
    """The study's page: compute, curves, labels saved per budget and protocol, the claim's verdict."""
    task = results.task.iloc[0]
    metric = primary_metric(task_kinds(results)[task])
    summary = summarise(results)
    saved = labels_saved_table(results)
    counts = results.groupby("fraction")["num_labels"].first()
    curves = plot_study_curves(summary, task, metric, out / "label_efficiency.png", counts.astype(int).to_dict())
    verdicts = claim_verdicts(results, task, metric, CLAIM_FRACTION)
    figure = plot_saved_vs_compute(saved, compute, out / "labels_saved_vs_compute.png")
    lines = [
        f"# Label efficiency: {task} ({metric})",
        "",
        f"`eossl study label-efficiency --preset {preset} --out {out}`; this invocation took {minutes:.0f} min "
        "(stages already done are reused). Test-split mean ± std over seeds "
        f"{sorted(results.seed.unique().tolist())}; labelled samples: "
        + ", ".join(f"{f:.0%} = {int(n)}" for f, n in counts.items())
        + ". Every trained run follows the budget rule (same steps for every init at one fraction, learning "
        "rates chosen per init on validation, early stopping not before half the budget); † marks results "
        "with a run still improving at the end of its budget.",
        "",
        "## Pretraining compute",
        "",
        "| init | pretraining steps | batch | samples seen | seconds | device |",
        "|---|---:|---:|---:|---:|---|",
        *(
            f"| {r.init} | {r.steps:,} | {r.batch} | {r.steps * r.batch:,} | {r.seconds:,.0f} | {r.device} |"
            for r in compute.itertuples()
        ),
        "",
        "## The claim: pretrained on 10% of the labels vs from scratch on 100%",
        "",
        *verdicts,
        "",
        "## Labels saved against the from-scratch reference",
        "",
        *headlines(saved[saved.protocol == REFERENCE_PROTOCOL]),
        "",
        "| init | protocol | fraction needed | seeds reaching it |",
        "|---|---|---:|---:|",
        *(f"| {r.init} | {r.protocol} | {needed_text(r)} | {r.seeds_reached}/{r.seeds} |" for r in saved.itertuples()),
        "",
        f"## Curves ({metric})",
        "",
        table(summary, task, metric, interval=True),
        "",
        f"![label efficiency]({curves.name})",
        "",
    ]
    if figure is not None:
        lines += [f"![labels saved vs pretraining compute]({figure.name})", ""]
    lines += ["Full report, with every run's budget and convergence: [report/report.md](report/report.md).", ""]
    return "\n".join(lines)
