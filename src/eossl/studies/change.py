"""``eossl study change``: change detection between two dates of the synthetic Earth (OSCD / SeCo style).

The store holds a second Sentinel-2 acquisition per place one year later, with real land-cover changes
(deforestation, new built-up, flooding) injected at half of the places; clouds, haze and illumination
differ between the dates as they do in real data. Encoders: a random init and ResNet-18s pretrained on
the store's unlabelled first-date patches with SimCLR, MoCo-v2 and SeCo (seasons of one place as
positives). Each is fine-tuned for the binary change mask with early fusion (dates stacked; a
pretrained encoder's first convolution is repeated for both dates) and FC-Siam-diff (one shared
encoder, feature differences at every level), at 10% and 100% of the labelled places. Columns: F1,
precision, recall and IoU of the change class; labels saved against the from-scratch reference on
100% of the places (stated only when that reference converged).

Stages (resumable): ``store``; ``pretrain-<method>``; ``eval-<init>``. ``study.md`` holds the tables.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd

from eossl.data.synth.generator import SynthSpec
from eossl.evaluation.efficiency import labels_saved_table, needed_text
from eossl.evaluation.tables import label_settings
from eossl.io import write_text_atomic
from eossl.studies.stages import Log, evaluate_stage, metric_table, pretrain_config, pretrain_stage, store_stage

METHODS = {"SimCLR": "simclr", "MoCo": "moco-v2", "SeCo": "seco"}
FUSIONS = {"early": "Early fusion", "siam-diff": "FC-Siam-diff"}
METRICS = [("f1", "F1"), ("precision", "Precision"), ("recall", "Recall"), ("iou", "IoU")]
PRESETS: dict[str, dict[str, Any]] = {
    "full": {
        "synth": SynthSpec(num_locations=1500, seasons=4, patch_size=32, seed=0, change_fraction=0.5),
        "pretrain": {"batch_size": 128, "max_steps": 2000},
        "trained": {"epochs": 50, "min_steps": 200, "batch_size": 32, "validations": 10, "patience": 3},
        "fractions": [0.1, 1.0],
        "seeds": [0, 1, 2],
    },
    # about 10 minutes on a 2-core CPU
    "quick": {
        "synth": SynthSpec(num_locations=240, seasons=4, patch_size=32, seed=0, change_fraction=0.5),
        "pretrain": {"batch_size": 32, "max_steps": 60},
        "trained": {
            "min_steps": 40,
            "max_steps": 40,
            "batch_size": 32,
            "validations": 2,
            "patience": 0,
            "encoder_lr_factor": 1.0,
        },
        "fractions": [0.1, 1.0],
        "seeds": [0],
    },
}
PRESETS["test"] = {
    **PRESETS["quick"],
    "synth": SynthSpec(num_locations=24, seasons=4, patch_size=32, seed=0, change_fraction=0.5),
    "pretrain": {"batch_size": 16, "max_steps": 1},
    "trained": {**PRESETS["quick"]["trained"], "min_steps": 1, "max_steps": 1, "batch_size": 16, "validations": 1},
    "fractions": [0.5, 1.0],
    "methods": {"SeCo": "seco"},
}


def run_change_study(out: Path, preset: str = "quick", log: Log = print) -> Path:
    """Run (or resume) the study into ``out``; return the path of ``study.md``."""
    p, out = PRESETS[preset], Path(out)
    started = time.perf_counter()
    store = store_stage(out / "store", p["synth"], log)
    methods = p.get("methods", METHODS)
    common = {"data": {"store": str(store), "modality": "s2"}, "encoder": {"name": "resnet18"}, "tasks": ["change"],
              "fractions": p["fractions"], "seeds": p["seeds"], "knn": {"enabled": False},
              "linear": {"enabled": False}, "finetune": p["trained"], "fusion": {"dates_modes": list(FUSIONS)},
              "prediction_maps": 3}  # fmt: skip
    frames = [evaluate_stage(out / "eval-random", {**common, "inits": ["random"]}, log).assign(Init="Random")]
    for label, method in methods.items():
        raw = pretrain_config(store, "s2", {"name": "resnet18"}, method, p["pretrain"])
        checkpoint = pretrain_stage(out / f"pretrain-{method}", raw, log)
        evaluation = {**common, "checkpoint": str(checkpoint), "inits": ["checkpoint"]}
        frames.append(evaluate_stage(out / f"eval-{method}", evaluation, log).assign(Init=label))
    results = pd.concat(frames, ignore_index=True)
    results["Fusion"] = results.fusion.map(FUSIONS)
    results["Labels"] = results.fraction.map(lambda f: f"{f:.0%}")
    order = [(f, i, lab) for f in FUSIONS.values() for i in ["Random", *methods] for lab in
             (f"{x:.0%}" for x in p["fractions"])]  # fmt: skip
    saved = labels_saved_table(label_settings(results.drop(columns=["Init", "Fusion", "Labels"])))
    saved_lines = ["| Init (fusion) | Protocol | Labels needed to match the reference |", "|---|---|---|"]
    saved_lines += [f"| {r.init} | {r.protocol} | {needed_text(r)} |" for r in saved.itertuples()]
    refused = sorted({r.refused for r in saved.itertuples() if r.refused})
    minutes = (time.perf_counter() - started) / 60
    lines = [
        "# Change detection on the synthetic Earth: pretraining x fusion x labelled places",
        "",
        f"`eossl study change --out {out} --preset {preset}` ({p['synth'].num_locations} places, changes at "
        f"{p['synth'].change_fraction:.0%} of them; ResNet-18 + UNet; pretraining {p['pretrain']['max_steps']} "
        f"steps at batch {p['pretrain']['batch_size']}; seeds {p['seeds']}; this run's last stage finished "
        f"{minutes:.0f} min after it resumed). Test split, change class, percent, mean ± std over seeds.",
        "",
        metric_table(results, ["Fusion", "Init", "Labels"], METRICS, order),
        "",
        "## Labels saved (fraction of the labelled places a pretrained encoder needs to match the from-scratch "
        "reference on 100%)",
        "",
        *saved_lines,
        "",
        *(f"Not stated: {reason}." for reason in refused),
        "",
    ]
    path = out / "study.md"
    write_text_atomic(path, "\n".join(lines))
    log(f"wrote {path}")
    return path
