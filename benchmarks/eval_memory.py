"""Peak memory of the streamed evaluation: a linear probe and a fine-tune on a store ``--scale`` x the
demo's with ``data.in_memory: false``, against the demo store, in one run.

    uv run --frozen python benchmarks/eval_memory.py --work /tmp/eossl-bench            # 10x: over an hour
    uv run --frozen python benchmarks/eval_memory.py --work /tmp/eossl-bench --scale 5  # ~1 h on a busy 2-core CPU
    uv run --frozen python benchmarks/eval_memory.py --work /tmp/eossl-bench-q --quick  # smoke run, ~6 min

Two synthetic stores are generated into ``--work`` (reused when present): the demo's
(``--locations`` x 4 seasons, 32 px) and one with ``--scale`` x as many locations. On each, every
measurement runs in a fresh Python process started by this script (``--child``), so each peak is that
run's own:

- ``import + open store``: imports the evaluation's libraries and opens the store (the baseline the
  libraries cost, subtracted in the table);
- ``linear``: ``eossl evaluate`` with the linear probe alone (random-init ResNet-18, the single-label
  task, 100% labels, one seed): BatchNorm re-estimation and the frozen features of every split,
  streamed from the store;
- ``finetune``: the fine-tune alone (50 steps of 64, one validation round), then the test split.

Both protocols run with ``data.in_memory: false``; on the demo store also with ``true`` (the arrays
held in RAM, as the evaluation always did before it streamed) as a reference. A child reports its own
peak resident set size on its last stdout line as JSON: ``VmHWM`` of ``/proc/self/status`` (the figure
in the table; it is reset by ``exec``) and ``getrusage(RUSAGE_SELF).ru_maxrss`` (on Linux it also
counts the pre-``exec`` image of the process, i.e. this script's, so it is only a cross-check).

Finished measurements are reused (``RUN/measurement.json``); an unfinished run's folder is wiped first,
so its feature cache never hides the encoding. ``--redo`` measures everything again. The table is
printed as markdown and written to ``WORK/eval_memory.json`` and ``WORK/eval_memory.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

SEASONS = 4
PATCH_SIZE = 32
BASELINE = "import + open store"
PROTOCOLS = ("linear", "finetune")
THREADS = 2


@dataclass(frozen=True)
class Job:
    """One measured child process."""

    store: Path
    protocol: str  # BASELINE or one of PROTOCOLS
    in_memory: bool
    out: Path
    quick: bool

    def argv(self) -> list[str]:
        args = [sys.executable, str(Path(__file__).resolve()), "--child", "measure", "--store", str(self.store)]
        args += ["--protocol", self.protocol, "--in-memory", str(self.in_memory).lower(), "--out", str(self.out)]
        return [*args, "--quick"] if self.quick else args


# -- children ----------------------------------------------------------------------------------------


def _peak_memory() -> dict[str, int]:
    """This process's peak and current RSS (KiB) and the largest waited-for child's peak."""
    status = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            status[key] = int(value.split()[0])  # "123456 kB"
    return {
        "vmhwm_kib": status["VmHWM"],
        "vmrss_kib": status["VmRSS"],
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "children_maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }


def _evaluate_config(store: Path, protocol: str, in_memory: bool, out: Path, quick: bool) -> dict[str, Any]:
    """The raw ``eossl evaluate`` config of one protocol alone (everything else disabled)."""
    steps = 5 if quick else 50
    finetune = {"min_steps": steps, "max_steps": steps, "batch_size": 64, "validations": 1, "patience": 0}
    return {
        "out": str(out),
        "data": {"store": str(store), "modality": "s2", "in_memory": in_memory},
        "inits": ["random"],
        "tasks": ["single-label"],
        "fractions": [1.0],
        "seeds": [0],
        "accelerator": "cpu",
        "linear": {"enabled": protocol == "linear", "max_iter": 10 if quick else 50},
        "knn": {"enabled": False},
        "frozen": {"enabled": False},
        "finetune": {"enabled": protocol == "finetune", **finetune},
    }


def child_measure(store: Path, protocol: str, in_memory: bool, out: Path, quick: bool) -> dict[str, Any]:
    """Run one measurement in this (fresh) process; the caller prints the returned dict."""
    import torch

    torch.set_num_threads(THREADS)
    from eossl.config import EvaluateConfig, validate_config
    from eossl.data.splits import split_by_location
    from eossl.data.store import SampleStore
    from eossl.evaluation.runner import run_evaluate

    opened = SampleStore(store)
    samples = len(opened)
    group = opened.dates.group if opened.dates is not None else None
    splits = {k: len(v) for k, v in split_by_location(opened.table, val=0.1, test=0.2, seed=0, group=group).items()}
    started = time.perf_counter()
    if protocol != BASELINE:
        del opened
        cfg = validate_config(EvaluateConfig, _evaluate_config(store, protocol, in_memory, out, quick))
        results = run_evaluate(cfg, log=lambda line: print(line, file=sys.stderr, flush=True))
        if results.empty:
            raise RuntimeError(f"the {protocol} evaluation wrote no results")
    return {"samples": samples, "splits": splits, "evaluate_s": time.perf_counter() - started, **_peak_memory()}


def child_generate(store: Path, locations: int) -> None:
    """Generate the synthetic store of ``locations`` places (in a child, so this script stays small)."""
    from eossl.data.synth.generator import SynthSpec, synthesize_store

    synthesize_store(store, SynthSpec(num_locations=locations, seasons=SEASONS, patch_size=PATCH_SIZE, seed=0))


# -- the parent --------------------------------------------------------------------------------------


def ensure_store(work: Path, locations: int) -> Path:
    """The store of ``locations`` places under ``work``, generated unless present."""
    store = work / f"store-{locations}"
    if (store / "metadata.csv").exists():
        return store
    print(f"generating {store} ({locations} locations x {SEASONS} seasons) ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", "generate", "--store", str(store),
         "--locations", str(locations)],
        check=True,
    )  # fmt: skip
    print(f"  generated in {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
    return store


def measure(job: Job, redo: bool) -> dict[str, Any]:
    """The measurement of ``job``: reused from ``job.out`` when finished, else run in a fresh child."""
    record = job.out / "measurement.json"
    if record.exists() and not redo:
        return json.loads(record.read_text())
    if job.out.exists():
        shutil.rmtree(job.out)  # a stale feature cache would skip the encoding
    job.out.mkdir(parents=True)
    label = f"{job.store.name} {job.protocol} in_memory={str(job.in_memory).lower()}"
    print(f"measuring {label} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    proc = subprocess.run(job.argv(), stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout)
        raise SystemExit(f"the child measuring {label} failed (exit {proc.returncode}); its traceback is above")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    result = json.loads(lines[-1])
    result.update(
        store=job.store.name, protocol=job.protocol, in_memory=job.in_memory, wall_s=wall,
        peak_rss_mib=result["vmhwm_kib"] / 1024,
    )  # fmt: skip
    record.write_text(json.dumps(result, indent=2) + "\n")
    print(f"  peak {result['peak_rss_mib']:.0f} MiB, {wall:.0f}s", file=sys.stderr, flush=True)
    return result


def jobs_for(store: Path, work: Path, rep: int, reference: bool, quick: bool) -> list[Job]:
    """Baseline, then each protocol streamed (and, with ``reference``, also in memory) on ``store``."""
    runs = work / "runs"
    jobs = [Job(store, BASELINE, False, runs / f"{store.name}-baseline-r{rep}", quick)]
    for protocol in PROTOCOLS:
        for in_memory in (False, True) if reference else (False,):
            name = f"{store.name}-{protocol}-{'memory' if in_memory else 'stream'}-r{rep}"
            jobs.append(Job(store, protocol, in_memory, runs / name, quick))
    return jobs


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table; "peak - baseline" subtracts the same store's (and repetition's) baseline."""
    baselines = {(r["store"], r["rep"]): r["peak_rss_mib"] for r in rows if r["protocol"] == BASELINE}
    lines = [
        "| store (samples) | protocol | in_memory | peak RSS (MiB) | peak − baseline (MiB) | wall s |",
        "|---|---|---|---:|---:|---:|",
    ]
    order = {name: i for i, name in enumerate([BASELINE, *PROTOCOLS])}
    for r in sorted(rows, key=lambda r: (r["samples"], r["rep"], order[r["protocol"]], r["in_memory"])):
        base = baselines.get((r["store"], r["rep"]))
        growth = "" if r["protocol"] == BASELINE or base is None else f"{r['peak_rss_mib'] - base:.0f}"
        in_memory = "" if r["protocol"] == BASELINE else str(r["in_memory"]).lower()
        lines.append(
            f"| {r['store']} ({r['samples']:,}) | {r['protocol']} | {in_memory} | {r['peak_rss_mib']:.0f} | "
            f"{growth} | {r['wall_s']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/eossl-bench"), help="stores and runs (reused)")
    parser.add_argument("--scale", type=int, default=10, help="the big store has SCALE x the demo's locations")
    parser.add_argument("--locations", type=int, default=2500, help="locations of the demo store")
    parser.add_argument("--repeat", type=int, default=1, help="repetitions, alternating demo and big store")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: 100 locations x scale 3, few steps")
    parser.add_argument("--redo", action="store_true", help="measure again even where a measurement exists")
    parser.add_argument("--child", choices=["measure", "generate"], help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--protocol", help=argparse.SUPPRESS)
    parser.add_argument("--in-memory", choices=["true", "false"], default="false", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child == "generate":
        child_generate(args.store, args.locations)
        return
    if args.child == "measure":
        result = child_measure(args.store, args.protocol, args.in_memory == "true", args.out, args.quick)
        print(json.dumps(result), flush=True)
        return

    if args.quick:
        args.locations, args.scale = min(args.locations, 100), min(args.scale, 3)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    demo = ensure_store(work, args.locations)
    big = ensure_store(work, args.locations * args.scale)
    started = time.perf_counter()
    rows = []
    for rep in range(args.repeat):
        for store in (demo, big):
            for job in jobs_for(store, work, rep, reference=store == demo, quick=args.quick):
                rows.append({**measure(job, args.redo), "rep": rep})
    markdown = table(rows)
    print(markdown)
    meta = {
        "command": " ".join(["python", "benchmarks/eval_memory.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "threads": THREADS,
        "locations": args.locations,
        "scale": args.scale,
        "quick": args.quick,
        "total_s": time.perf_counter() - started,
        "peak_rss": "VmHWM of each child process (MiB)",
    }
    (work / "eval_memory.json").write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    (work / "eval_memory.md").write_text(markdown + "\n")
    print(f"\nwritten: {work / 'eval_memory.json'}, {work / 'eval_memory.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
