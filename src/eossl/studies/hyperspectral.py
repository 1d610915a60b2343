"""``eossl study hyperspectral``: the SpectralEarth table's layout on the synthetic Earth's EnMAP-like cube.

The store carries an EnMAP-like modality (about 200 bands from 420 to 2450 nm, water-vapour bands NaN
as in real L2A products). Two encoders take it: a spectral adapter (per-pixel 1-D convolutions along
the bands, ~56K parameters) in front of a ResNet, and a ViT whose patch embedding is generated from the
bands' wavelengths (DOFA-style). Each is pretrained on the unlabelled cubes (MoCo-v2 and DINO, as in
the talk), then evaluated on land-cover segmentation with the talk's three protocols: frozen encoder
(0 trainable encoder parameters), full fine-tuning, and fine-tuning the spectral adapter only (for the
wavelength ViT: its wavelength-conditioned patch embedding is not an adapter, so it gets the residual
spectral adapter in front). The table lists the trainable encoder parameters of each protocol.

Stages (resumable): ``store``; ``pretrain-<method>-<encoder>``; ``eval-<encoder>-<init>``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd

from eossl.data.synth.generator import SynthSpec
from eossl.io import write_text_atomic
from eossl.studies.stages import Log, evaluate_stage, mean_std, pretrain_config, pretrain_stage, store_stage

ENCODERS: dict[str, dict[str, Any]] = {
    "Spec. ResNet": {"name": "resnet18", "spectral_channels": 32},
    "Wavelength ViT-S": {"name": "wavelength-vit-s", "patch_size": 8},
}
METHODS = {"MoCo-v2": "moco-v2", "DINO": "dino"}
PROTOCOLS = {"frozen": "Frozen encoder", "finetune": "Full fine-tuning", "adapter-spectral": "Fine-tune adapter"}
PRESETS: dict[str, dict[str, Any]] = {
    "full": {
        "synth": SynthSpec(num_locations=1500, seasons=1, patch_size=32, seed=0, hyperspectral_bands=202),
        "encoders": {**ENCODERS, "Spec. ResNet": {"name": "resnet50", "spectral_channels": 32}},
        "pretrain": {"batch_size": 128, "max_steps": 2000},
        "trained": {"epochs": 50, "min_steps": 200, "batch_size": 32, "validations": 10, "patience": 3},
        "seeds": [0, 1, 2],
    },
    # about 15 minutes on a 2-core CPU: a small store, one method, short fixed budgets
    "quick": {
        "synth": SynthSpec(num_locations=120, seasons=1, patch_size=32, seed=0, hyperspectral_bands=202),
        "encoders": ENCODERS,
        "methods": {"MoCo-v2": "moco-v2"},
        "pretrain": {"batch_size": 16, "max_steps": 30},
        "trained": {
            "min_steps": 20,
            "max_steps": 20,
            "batch_size": 16,
            "validations": 1,
            "patience": 0,
            "encoder_lr_factor": 1.0,
        },
        "seeds": [0],
    },
}
PRESETS["test"] = {
    **PRESETS["quick"],
    "synth": SynthSpec(num_locations=24, seasons=1, patch_size=32, seed=0, hyperspectral_bands=60),
    "pretrain": {"batch_size": 8, "max_steps": 1},
    "trained": {**PRESETS["quick"]["trained"], "min_steps": 1, "max_steps": 1, "batch_size": 8, "validations": 1},
    "methods": {"MoCo-v2": "moco-v2"},
}


def _table(results: pd.DataFrame, encoders: list[str], inits: list[str]) -> str:
    """Rows protocol (trainable encoder parameters) x init, columns encoders; cells mIoU."""
    part = results[results.metric == "mIoU"]
    lines = ["| Protocol (trainable encoder params) | Init | " + " | ".join(encoders) + " |",
             "|---|---|" + "---:|" * len(encoders)]  # fmt: skip
    for protocol, label in PROTOCOLS.items():
        rows = part[part.protocol == protocol]
        if rows.empty:
            continue
        params = ", ".join(f"{int(v):,}" for v in rows.groupby("Encoder").trainable_params.first().reindex(encoders)
                           .dropna())  # fmt: skip
        for init in inits:
            cells = [rows[(rows.Encoder == e) & (rows.Init == init)].value for e in encoders]
            lines.append(f"| {label} ({params}) | {init} | " + " | ".join(mean_std(c) if len(c) else "—"
                                                                       for c in cells) + " |")  # fmt: skip
    return "\n".join(lines)


def run_hyperspectral_study(out: Path, preset: str = "quick", log: Log = print) -> Path:
    """Run (or resume) the study into ``out``; return the path of ``study.md``."""
    p, out = PRESETS[preset], Path(out)
    started = time.perf_counter()
    store = store_stage(out / "store", p["synth"], log)
    methods, encoders = p.get("methods", METHODS), p["encoders"]
    common = {"data": {"store": str(store), "modality": "enmap"}, "tasks": ["mask"], "fractions": [1.0],
              "seeds": p["seeds"], "knn": {"enabled": False}, "linear": {"enabled": False},
              "frozen": {**p["trained"], "enabled": True}, "finetune": p["trained"],
              "adapter": {**p["trained"], "enabled": True, "modes": ["spectral"]}, "prediction_maps": 2}  # fmt: skip
    frames = []
    for label, encoder in encoders.items():
        name = encoder["name"] + (f"-spectral{encoder['spectral_channels']}" if "spectral_channels" in encoder else "")
        random = {**common, "encoder": encoder, "inits": ["random"]}
        frames.append(evaluate_stage(out / f"eval-{name}-random", random, log).assign(Encoder=label, Init="Random"))
        for init, method in methods.items():
            raw = pretrain_config(store, "enmap", encoder, method, p["pretrain"])
            checkpoint = pretrain_stage(out / f"pretrain-{method}-{name}", raw, log)
            evaluation = {**common, "checkpoint": str(checkpoint), "inits": ["checkpoint"]}
            rows = evaluate_stage(out / f"eval-{name}-{method}", evaluation, log)
            frames.append(rows.assign(Encoder=label, Init=init))
    results = pd.concat(frames, ignore_index=True)
    minutes = (time.perf_counter() - started) / 60
    lines = [
        "# Hyperspectral (EnMAP-like) land-cover segmentation: spectral adapter and wavelength-conditioned ViT",
        "",
        f"`eossl study hyperspectral --out {out} --preset {preset}` ({p['synth'].num_locations} places, "
        f"{p['synth'].hyperspectral_bands} bands; pretraining {p['pretrain']['max_steps']} steps at batch "
        f"{p['pretrain']['batch_size']}; every training label; seeds {p['seeds']}; this run's last stage finished "
        f"{minutes:.0f} min after it resumed). Test split mIoU, percent, mean ± std over seeds.",
        "",
        _table(results, list(encoders), ["Random", *methods]),
        "",
    ]
    path = out / "study.md"
    write_text_atomic(path, "\n".join(lines))
    log(f"wrote {path}")
    return path
