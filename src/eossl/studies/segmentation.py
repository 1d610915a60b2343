"""``eossl study segmentation``: the source talk's forest/land-cover segmentation table on the synthetic Earth.

Rows UNet / DeepLabV3+ x ResNet-18 / ResNet-50 and UpConv x ViT-S, each from a random init and from
SimCLR, MoCo-v2 and DINO pretraining on the store's unlabelled Sentinel-2 patches; columns overall
accuracy and mIoU of the land-cover map after fine-tuning (the talk: "fine-tuning results after 100
epochs"). A second table compares the detail-preserving ResNet-18 (stem stride 1, no max-pool, stride 2
in the first residual stage) and the boundary-weighted cross-entropy with the standard ones, on mIoU
and boundary F1.

Stages (each in its own folder under ``--out``, skipped when done, so an interrupted study resumes):
``store``; ``pretrain-<method>-<encoder>``; ``eval-<decoder>-<encoder>-<init>``;
``detail-<encoder>-<loss>-<init>``. ``study.md`` holds both tables.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd

from eossl.data.synth.generator import SynthSpec
from eossl.io import write_text_atomic
from eossl.studies.stages import Log, evaluate_stage, metric_table, pretrain_config, pretrain_stage, store_stage

ENCODERS: dict[str, dict[str, Any]] = {
    "ResNet-18": {"name": "resnet18"},
    "ResNet-50": {"name": "resnet50"},
    "ViT-S": {"name": "vit_small_patch16_224", "patch_size": 8},
    "ResNet-18 detail": {"name": "resnet18-detail"},
}
GRID = [("UNet", "unet", "ResNet-18"), ("UNet", "unet", "ResNet-50"), ("DeepLabV3+", "deeplabv3plus", "ResNet-18"),
        ("DeepLabV3+", "deeplabv3plus", "ResNet-50"), ("UpConv", "upconv", "ViT-S")]  # fmt: skip
METHODS = {"SimCLR": "simclr", "MoCo": "moco-v2", "DINO": "dino"}
BOUNDARY_WEIGHT = 5.0
MAIN_METRICS = [("overall_accuracy", "Overall accuracy"), ("mIoU", "Mean IoU")]
PRESETS: dict[str, dict[str, Any]] = {
    "full": {
        "synth": SynthSpec(num_locations=2000, seasons=1, patch_size=32, seed=0),
        "pretrain": {"batch_size": 128, "max_steps": 2000},
        "trained": {"epochs": 100, "min_steps": 200, "batch_size": 64, "validations": 10, "patience": 3},
        "seeds": [0, 1, 2],
    },
    # about 20 minutes on a 2-core CPU: a small store, short pretraining, a fixed fine-tuning budget
    "quick": {
        "synth": SynthSpec(num_locations=200, seasons=1, patch_size=32, seed=0),
        "pretrain": {"batch_size": 32, "max_steps": 40},
        "trained": {
            "min_steps": 30,
            "max_steps": 30,
            "batch_size": 16,
            "validations": 1,
            "patience": 0,
            "encoder_lr_factor": 1.0,
        },
        "seeds": [0],
        # ResNet-50 pretraining and fine-tuning is 4x ResNet-18's: its rows are left to the full preset
        "grid": [row for row in GRID if row[2] != "ResNet-50"],
    },
}
PRESETS["test"] = {
    **PRESETS["quick"],
    "synth": SynthSpec(num_locations=40, seasons=1, patch_size=32, seed=0),
    "pretrain": {"batch_size": 16, "max_steps": 1},
    "trained": {**PRESETS["quick"]["trained"], "min_steps": 1, "max_steps": 1, "batch_size": 16, "validations": 1},
    "grid": [("UNet", "unet", "ResNet-18"), ("UpConv", "upconv", "ViT-S")],
    "methods": {"SimCLR": "simclr"},
    "detail_pretrained": False,
}


def _pretrained(out: Path, store: Path, p: dict, encoder: str, method: str, log: Log) -> Path:
    raw = pretrain_config(store, "s2", ENCODERS[encoder], method, p["pretrain"])
    return pretrain_stage(out / f"pretrain-{method}-{ENCODERS[encoder]['name']}", raw, log)


def _evaluation(store: Path, p: dict, encoder: str, decoder: str, checkpoint: Path | None, **dense: Any) -> dict:
    raw = {"data": {"store": str(store), "modality": "s2"}, "encoder": ENCODERS[encoder], "tasks": ["mask"],
           "fractions": [1.0], "seeds": p["seeds"], "knn": {"enabled": False}, "linear": {"enabled": False},
           "finetune": p["trained"], "dense": {"decoder": decoder, **dense}, "prediction_maps": 2}  # fmt: skip
    if checkpoint is None:
        return {**raw, "inits": ["random"]}
    return {**raw, "checkpoint": str(checkpoint), "inits": ["checkpoint"]}


def run_segmentation_study(out: Path, preset: str = "quick", log: Log = print) -> Path:
    """Run (or resume) the study into ``out``; return the path of ``study.md``."""
    p, out = PRESETS[preset], Path(out)
    started = time.perf_counter()
    store = store_stage(out / "store", p["synth"], log)
    methods, grid = p.get("methods", METHODS), p.get("grid", GRID)
    frames = []
    for decoder_label, decoder, encoder in grid:
        inits = {"Random": None} | {label: _pretrained(out, store, p, encoder, m, log) for label, m in methods.items()}
        for init, checkpoint in inits.items():
            folder = out / f"eval-{decoder}-{ENCODERS[encoder]['name']}-{init.lower()}"
            rows = evaluate_stage(folder, _evaluation(store, p, encoder, decoder, checkpoint), log)
            frames.append(rows.assign(Decoder=decoder_label, Encoder=encoder, Init=init))
    detail = []
    for encoder in ("ResNet-18", "ResNet-18 detail"):
        for loss, weight in (("cross-entropy", 1.0), ("boundary-weighted", BOUNDARY_WEIGHT)):
            inits = {"Random": None}
            if p.get("detail_pretrained", True):
                inits["SimCLR"] = _pretrained(out, store, p, encoder, "simclr", log)
            for init, checkpoint in inits.items():
                folder = out / f"detail-{ENCODERS[encoder]['name']}-{loss}-{init.lower()}"
                raw = _evaluation(store, p, encoder, "unet", checkpoint, boundary_weight=weight)
                detail.append(evaluate_stage(folder, raw, log).assign(Encoder=encoder, Loss=loss, Init=init))
    main = pd.concat(frames, ignore_index=True)
    order = [(d, e, i) for d, _, e in grid for i in ["Random", *methods]]
    details = pd.concat(detail, ignore_index=True)
    minutes = (time.perf_counter() - started) / 60
    lines = [
        "# Land-cover segmentation on the synthetic Earth: decoders x encoders x pretraining",
        "",
        f"`eossl study segmentation --out {out} --preset {preset}` ({p['synth'].num_locations} locations of 32x32 "
        f"S2 pixels, pretraining {p['pretrain']['max_steps']} steps at batch {p['pretrain']['batch_size']}, "
        f"fine-tuning on every training label; seeds {p['seeds']}; this run's last stage finished {minutes:.0f} min "
        "after it resumed). Test split, percent, mean ± std over seeds.",
        "",
        "## Decoders x encoders x pretraining (fine-tuned)",
        "",
        metric_table(main, ["Decoder", "Encoder", "Init"], MAIN_METRICS, order),
        "",
        f"## Detail preservation: detail-preserving ResNet-18 and boundary-weighted loss (weight {BOUNDARY_WEIGHT:g})",
        "",
        metric_table(details, ["Encoder", "Loss", "Init"], [("mIoU", "Mean IoU"), ("boundary_f1", "Boundary F1")]),
        "",
    ]
    path = out / "study.md"
    write_text_atomic(path, "\n".join(lines))
    log(f"wrote {path}")
    return path
