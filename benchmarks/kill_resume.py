"""kill -9 harness: pretraining and evaluation killed at random moments, resumed, compared with an
uninterrupted run of the same seed.

For each of ``--trials`` trials, ``eossl pretrain CONFIG resume=auto`` is started as a subprocess and
sent SIGKILL after a random time (uniform over the uninterrupted run's duration, up to ``--kills`` times
per trial), then started again until it exits 0. The trial counts as completed when the run finished,
and as equal when its final checkpoint's weights are bit-equal to the uninterrupted run's and its
``logs/metrics.csv`` holds every step's loss once, with the same values. Evaluation is treated the same
way (``eossl evaluate CONFIG``, which resumes from its completed cells): equal means its
``results.csv`` has the uninterrupted run's rows with values equal to 1e-9 (same code, same seeds).

    uv run python benchmarks/kill_resume.py --trials 10 --json runs/kill-resume.json

Prints a table and writes the JSON. Numbers in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

EOSSL = str(Path(sys.executable).parent / "eossl")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def pretrain_config(store: Path, out: Path, steps: int) -> dict:
    return {
        "out": str(out), "seed": 5, "resume": "auto",
        "data": {"store": str(store), "batch_size": 16, "num_workers": 0},
        "encoder": {"name": "resnet18", "output_stride": 32},
        "method": {"name": "simclr", "hidden_dim": 64, "projection_dim": 32},
        "trainer": {"max_steps": steps, "progress_bar": False, "log_every_n_steps": 1, "precision": "32-true",
                    "checkpoint_every_n_steps": 5},
        "health": {"every_n_steps": 5, "knn_every_n_steps": 20, "knn_bank_size": 128, "knn_query_size": 64},
    }  # fmt: skip


def evaluate_config(store: Path, checkpoint: Path, out: Path) -> dict:
    return {
        "out": str(out), "checkpoint": str(checkpoint), "data": {"store": str(store), "modality": "s2"},
        "inits": ["checkpoint", "random"], "tasks": ["single-label"], "fractions": [0.1, 0.5, 1.0],
        "seeds": [0, 1], "finetune": {"enabled": False}, "linear": {"max_iter": 50},
    }  # fmt: skip


def run(config: Path, command: str, timeout: float = 900) -> float:
    """Run ``eossl COMMAND CONFIG`` to the end; its wall time."""
    started = time.perf_counter()
    result = subprocess.run([EOSSL, command, str(config)], env=ENV, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"eossl {command} {config} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def run_with_kills(config: Path, command: str, duration: float, kills: int, rng: random.Random) -> dict:
    """Start ``eossl COMMAND CONFIG``, SIGKILL it after random times (at most ``kills`` times), restart until
    it exits 0 (at most ``kills + 3`` starts)."""
    killed_after: list[float] = []
    for _attempt in range(kills + 3):
        process = subprocess.Popen([EOSSL, command, str(config)], env=ENV, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)  # fmt: skip
        if len(killed_after) < kills:
            wait = rng.uniform(0.1, 1.0) * duration
            try:
                process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                process.wait()
                killed_after.append(round(wait, 1))
                continue
        _, stderr = process.communicate(timeout=900)
        if process.returncode == 0:
            return {"completed": True, "killed_after_s": killed_after}
        return {"completed": False, "killed_after_s": killed_after, "error": stderr.decode()[-500:]}
    return {"completed": False, "killed_after_s": killed_after, "error": "did not finish"}


def weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def losses(out: Path) -> list[tuple[int, str]]:
    with open(out / "logs" / "metrics.csv", newline="") as handle:
        return sorted((int(r["step"]), r["train/loss"]) for r in csv.DictReader(handle) if r.get("train/loss"))


def same_pretraining(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa) and losses(a) == losses(b)


def results(out: Path) -> pd.DataFrame:
    keys = ["init", "protocol", "task", "fraction", "seed", "metric", "modality", "fusion", "missing"]
    frame = pd.read_csv(out / "results.csv")
    return frame.sort_values(keys).reset_index(drop=True)[[*keys, "value"]]


def same_results(a: Path, b: Path) -> bool:
    ra, rb = results(a), results(b)
    if len(ra) != len(rb) or not ra.drop(columns="value").astype(str).equals(rb.drop(columns="value").astype(str)):
        return False
    return bool(((ra["value"] - rb["value"]).abs().fillna(0) <= 1e-9).all())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--kills", type=int, default=2, help="kills per trial (each at a random moment)")
    parser.add_argument("--steps", type=int, default=40, help="pretraining steps")
    parser.add_argument("--work", type=Path, default=Path("runs/kill-resume"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stages", nargs="+", default=["pretrain", "evaluate"], choices=["pretrain", "evaluate"])
    args = parser.parse_args()

    from eossl.data.synth.generator import SynthSpec, synthesize_store

    rng = random.Random(args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    for old in [p for stage in args.stages for p in args.work.glob(f"{stage}-*")]:  # earlier trials of these stages
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    store = args.work / "store"
    if not store.is_dir():
        synthesize_store(store, SynthSpec(num_locations=60, seasons=4, patch_size=32, seed=3))
    report: dict = {"trials": args.trials, "kills_per_trial": args.kills, "steps": args.steps}
    for stage in args.stages:
        reference = args.work / f"{stage}-reference"
        checkpoint = args.work / "pretrain-reference" / "checkpoints" / "last.ckpt"
        if stage == "pretrain":
            make = lambda out: pretrain_config(store, out, args.steps)  # noqa: E731
        else:
            make = lambda out, checkpoint=checkpoint: evaluate_config(store, checkpoint, out)  # noqa: E731
        config = args.work / f"{stage}-reference.yaml"
        config.write_text(yaml.safe_dump(make(reference)))
        duration = run(config, stage)
        same = same_pretraining if stage == "pretrain" else same_results
        trials = []
        for trial in range(args.trials):
            out = args.work / f"{stage}-{trial}"
            config = args.work / f"{stage}-{trial}.yaml"
            config.write_text(yaml.safe_dump(make(out)))
            outcome = run_with_kills(config, stage, duration, args.kills, rng)
            outcome["equal"] = bool(outcome["completed"] and same(reference, out))
            trials.append(outcome)
            print(f"{stage} trial {trial}: killed after {outcome['killed_after_s']} s, "
                  f"completed {outcome['completed']}, equal {outcome['equal']} {outcome.get('error', '')}",
                  flush=True)  # fmt: skip
        report[stage] = {
            "uninterrupted_seconds": round(duration, 1),
            "completed": sum(t["completed"] for t in trials),
            "equal": sum(t["equal"] for t in trials),
            "kills": sum(len(t["killed_after_s"]) for t in trials),
            "trials": trials,
        }
    print("\n| stage | kills | completed | equal to the uninterrupted run |\n|---|---|---|---|")
    for stage in args.stages:
        r = report[stage]
        print(f"| {stage} | {r['kills']} | {r['completed']}/{args.trials} | {r['equal']}/{args.trials} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
