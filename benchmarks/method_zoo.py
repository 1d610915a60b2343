"""The method zoo on the synthetic Earth: every method, the same pretraining budget, the same evaluation.

    uv run python benchmarks/method_zoo.py --out runs/method-zoo            # the README table (~45 min, 2 CPU cores)
    uv run python benchmarks/method_zoo.py --steps 5 --locations 100 --methods simclr mae   # smoke run

Each method is pretrained by ``eossl pretrain`` in its own process (so peak memory is per method), with
``--steps`` steps of ``--batch-size`` samples, its own recipe (augmentations, heads, schedules) and the
shared optimiser settings. Then its frozen encoder is evaluated by ``eossl evaluate``'s linear probe and
kNN at 1% and 10% labels over 3 seeds, beside a random-init ResNet-18 and image statistics.
Writes ``zoo.csv`` (one row per method), ``zoo.md`` (the table) and every run's folder into ``--out``.
Finished pretraining runs and evaluations are reused: delete ``OUT/METHOD`` to redo one method (e.g. to
re-measure its throughput on an otherwise idle machine).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from eossl.config import DataConfig, EvaluateConfig, FinetuneProtocolConfig
from eossl.data.synth.generator import SynthSpec, synthesize_store
from eossl.evaluation.runner import run_evaluate
from eossl.methods import METHODS

CELLS = [("linear", 0.01), ("linear", 0.1), ("knn", 0.01), ("knn", 0.1)]


def pretrain(method: str, store: Path, out: Path, steps: int, batch_size: int) -> dict:
    if not (out / "summary.json").exists():
        command = [
            str(Path(sys.executable).parent / "eossl"), "pretrain", "/dev/null", f"data.store={store}",
            f"data.batch_size={batch_size}", f"method.name={method}", f"trainer.max_steps={steps}",
            "trainer.progress_bar=false", f"out={out}",
        ]  # fmt: skip
        if METHODS[method].config.cross_modal:
            command.append("data.modalities=[s2,s1]")  # evaluated on its S2 (anchor) encoder like the others
        subprocess.run(command, check=True)
    return json.loads((out / "summary.json").read_text())


def evaluate(store: Path, out: Path, inits: list[str], checkpoint: Path | None, seeds: list[int]) -> pd.DataFrame:
    if (out / "results.csv").exists() and (
        checkpoint is None or (out / "results.csv").stat().st_mtime > checkpoint.stat().st_mtime
    ):
        return pd.read_csv(out / "results.csv")  # already evaluated (delete the folder to redo)
    cfg = EvaluateConfig(
        out=out,
        data=DataConfig(store=store),
        checkpoint=checkpoint,
        inits=inits,
        fractions=[0.01, 0.1],
        seeds=seeds,
        finetune=FinetuneProtocolConfig(enabled=False),
    )
    return run_evaluate(cfg, log=lambda line: print(line, flush=True))


def cell(results: pd.DataFrame, init: str, protocol: str, fraction: float, task: str, metric: str) -> str:
    part = results[
        (results.init == init)
        & (results.protocol == protocol)
        & (results.fraction.round(6) == fraction)
        & (results.task == task)
        & (results.metric == metric)
    ].value
    return f"{part.mean():.3f} ± {part.std():.3f}" if len(part) else ""


def markdown_table(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "|---" + "|---:" * (len(frame.columns) - 1) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/method-zoo"))
    parser.add_argument("--store", type=Path, default=None, help="default: OUT/store, generated when missing")
    parser.add_argument("--locations", type=int, default=2500)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args()
    store = args.store or args.out / "store"
    if not store.exists():
        synthesize_store(store, SynthSpec(num_locations=args.locations, seed=0))
    rows, results = [], []
    baseline = evaluate(store, args.out / "baselines", ["random", "image-stats"], None, args.seeds)
    results.append(baseline)
    for init in ("random", "image-stats"):
        rows.append({"method": f"{init} (baseline)", "init": init, "encoder": "resnet18" if init == "random" else ""})
    for method in args.methods:
        started = time.perf_counter()
        summary = pretrain(method, store, args.out / method / "pretrain", args.steps, args.batch_size)
        ckpt = Path(summary["checkpoint"])
        result = evaluate(store, args.out / method / "evaluate", ["checkpoint"], ckpt, args.seeds)
        results.append(result)
        rows.append(
            {
                "method": method,
                "init": method,
                "encoder": summary["encoder"],
                "samples_per_second": summary["samples_per_second"],
                "peak_rss_mb": summary["peak_rss_mb"],
                "rss_before_training_mb": summary.get("rss_before_training_mb"),
                "final_knn_online": (summary["health"]["knn_accuracy"] or [{}])[-1].get("accuracy"),
                "collapse_warnings": len(summary["health"]["collapse_warnings"]),
            }
        )
        print(f"{method}: done in {time.perf_counter() - started:.0f}s", flush=True)
    merged = pd.concat(results)
    merged.to_csv(args.out / "results.csv", index=False)
    for row in rows:
        for protocol, fraction in CELLS:
            for task, metric, short in (("single-label", "accuracy", "acc"), ("multi-label", "mAP", "mAP")):
                row[f"{protocol} {fraction:.0%} {short}"] = cell(merged, row["init"], protocol, fraction, task, metric)
    zoo = pd.DataFrame(rows)
    zoo.to_csv(args.out / "zoo.csv", index=False)
    header = (
        f"Pretraining: {args.steps} steps x {args.batch_size} samples per method on {store} "
        f"({args.locations} locations); test-split mean ± std over seeds {args.seeds}.\n"
    )
    columns = ["method", "encoder"] + [f"{p} {f:.0%} acc" for p, f in CELLS] + [f"{p} {f:.0%} mAP" for p, f in CELLS]
    columns += ["samples_per_second", "peak_rss_mb", "rss_before_training_mb"]
    table = markdown_table(zoo[columns].astype(object).fillna(""))
    (args.out / "zoo.md").write_text(header + "\n" + table + "\n")
    print(header + "\n" + table)


if __name__ == "__main__":
    main()
