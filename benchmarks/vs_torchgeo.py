"""eossl's SimCLR training step against TorchGeo's ``SimCLRTask`` on the same work, in one run.

Same work: SimCLR, timm ResNet-18, 12 x 64 x 64 input, batch 64 (two views: 128 images through the
encoder), on-device augmentation, NT-Xent, backward and one optimiser step. TorchGeo is built exactly as
``../shared/bench/anchor_torchgeo_simclr.py`` builds it (SGD); eossl as ``eossl pretrain`` builds it
(its configured optimiser, AdamW, and Lightning's ``configure_model`` hook) with the standard stride
(``encoder.output_stride: 32``), and also with eossl's default configuration (output stride 16).
The toolkits alternate within every round (the order flips each round); each figure is the median step
of a round, and the ratio is taken within the round. TorchGeo is not a runtime dependency::

    uv run --with torchgeo==0.8.1 --with requests python benchmarks/vs_torchgeo.py
    .venv/bin/python benchmarks/vs_torchgeo.py --rounds 3   # where the torchgeo extra is installed

``--loss-curve N`` instead trains eossl's SimCLR N steps on synthetic-Earth scenes from one seed, with and
without the training layout (channels-last weights, tiny-map convolutions as GEMM, see
``eossl.models.small_map_conv``), beside a run whose initial weights differ by 1e-6: the speed-up must
not change what is learned.

``--profile N`` runs torch.profiler over N eossl steps (output stride 32, after a warm-up step) at each
``--precision`` and prints the operators taking the most time (self CPU time), the breakdown recorded in
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict

import torch

from eossl.data.config import DataConfig
from eossl.data.sensors import SENSORS
from eossl.methods import METHODS
from eossl.methods.config import PretrainConfig

BANDS, SIZE = 12, 64


def torchgeo_step(batch: int):
    """TorchGeo 0.8.1 ``SimCLRTask`` as the anchor script builds it: a closure doing one training step."""
    from torchgeo.trainers import SimCLRTask

    task = SimCLRTask(model="resnet18", in_channels=BANDS, version=1, layers=2, hidden_dim=512, output_dim=128,
                      lr=0.1, memory_bank_size=0, size=SIZE, grayscale_weights=None)  # fmt: skip
    task.log = lambda *a, **k: None  # no trainer attached
    optimizer = torch.optim.SGD(task.parameters(), lr=0.01)
    x = {"image": torch.rand(batch, BANDS, SIZE, SIZE)}

    def step(i: int) -> float:
        loss = task.training_step(x, i)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def eossl_method(output_stride: int | None, layout: bool = True):
    """eossl's SimCLR on a 12-band Sentinel-2 L2A modality, built as ``eossl pretrain`` builds it."""
    stats = {"s2": {"mean": [0.15] * BANDS, "std": [0.08] * BANDS, "p2": [0.01] * BANDS, "p98": [0.45] * BANDS}}
    cfg = PretrainConfig(
        data=DataConfig(store="unused"), method={"name": "simclr"},
        encoder={"name": "resnet18", "output_stride": output_stride, "img_size": SIZE},
    )  # fmt: skip
    model = METHODS["simclr"](cfg.model_dump(mode="json"), [asdict(SENSORS["s2-l2a"])], stats)
    model.log = lambda *a, **k: None  # no trainer attached
    if layout:
        model.configure_model()  # what Lightning calls before training
    return model


def eossl_step(batch: int, output_stride: int | None):
    model = eossl_method(output_stride)
    optimizer = model.configure_optimizers()["optimizer"]
    x = {"s2": torch.rand(batch, BANDS, SIZE, SIZE) * 0.45}  # reflectance

    def step(i: int) -> float:
        loss = model.training_step(x, i)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def median_step(step, steps: int, bf16: bool) -> float:
    """Median seconds of ``steps`` training steps after one warm-up step, under bf16 autocast if asked."""
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            step(i)
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(args: argparse.Namespace) -> dict:
    sides = {
        "torchgeo": torchgeo_step(args.batch),
        "eossl_os32": eossl_step(args.batch, 32),
        "eossl_default": eossl_step(args.batch, None),
    }
    results: dict = {"batch": args.batch, "steps": args.steps, "threads": torch.get_num_threads(),
                     "torch": torch.__version__, "rounds": []}  # fmt: skip
    for r in range(args.rounds):
        for precision in args.precision:
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            rates = {}
            for name in order:
                rates[name] = args.batch / median_step(sides[name], args.steps, precision == "bf16")
            row = {"round": r + 1, "precision": precision, **{k: round(v, 1) for k, v in rates.items()}}
            row["ratio_os32"] = round(rates["eossl_os32"] / rates["torchgeo"], 3)
            row["ratio_default"] = round(rates["eossl_default"] / rates["torchgeo"], 3)
            results["rounds"].append(row)
            print(json.dumps(row), flush=True)
    return results


def table(results: dict) -> str:
    lines = [
        "| precision | TorchGeo 0.8.1 `SimCLRTask` | eossl `simclr`, output stride 32 | ratio | "
        "eossl default (stride 16) | ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for precision in dict.fromkeys(r["precision"] for r in results["rounds"]):
        rows = [r for r in results["rounds"] if r["precision"] == precision]

        def med(key: str, rows: list = rows) -> float:
            return statistics.median(r[key] for r in rows)

        lines.append(
            f"| {precision} ({len(rows)} rounds, medians) | {med('torchgeo'):.1f} samples/s | "
            f"{med('eossl_os32'):.1f} samples/s | {med('ratio_os32'):.2f}x | {med('eossl_default'):.1f} samples/s | "
            f"{med('ratio_default'):.2f}x |"
        )
    return "\n".join(lines)


def loss_curves(steps: int, batch: int) -> None:
    """SimCLR from one seed on synthetic-Earth scenes (64 px): plain, with the training layout, and plain
    with its initial weights perturbed by 1e-6 (relative): the last shows how far two runs drift apart from
    rounding alone (training is chaotic), the yardstick for the layout's difference."""
    import tempfile
    from pathlib import Path

    from eossl.data.store import SampleStore
    from eossl.data.synth.generator import SynthSpec, synthesize_store

    with tempfile.TemporaryDirectory() as tmp:
        synthesize_store(Path(tmp) / "store", SynthSpec(num_locations=64, patch_size=SIZE))
        store = SampleStore(Path(tmp) / "store")
        scenes = torch.from_numpy(store.modalities["s2"].to_physical(store.read("s2")))
    curves = {}
    for variant in ("plain", "layout", "perturbed"):
        torch.manual_seed(0)
        model = eossl_method(32, layout=variant == "layout")
        if variant == "perturbed":
            noise = torch.Generator().manual_seed(2)  # its own generator: the augmentations' draws stay the same
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(1 + 1e-6 * torch.randn(p.shape, generator=noise))
        optimizer = model.configure_optimizers()["optimizer"]
        order = torch.randperm(len(scenes), generator=torch.Generator().manual_seed(1))
        curve = []
        for i in range(steps):
            rows = order[(i * batch) % len(scenes) :][:batch]
            loss = model.training_step({"s2": scenes[rows]}, i)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            curve.append(loss.item())
        curves[variant] = curve
    print("step  plain   layout  perturbed")
    for i in range(0, steps, max(1, steps // 20)):
        print(f"{i:4d}  {curves['plain'][i]:.4f}  {curves['layout'][i]:.4f}  {curves['perturbed'][i]:.4f}")
    tail = max(1, steps // 4)
    for variant, curve in curves.items():
        print(f"{variant:9s} mean loss over the last {tail} steps: {statistics.mean(curve[-tail:]):.4f}")


def profile(steps: int, batch: int, precisions: list[str], side: str = "eossl") -> None:
    """The top operators by self CPU time over ``steps`` training steps of one side."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for precision in precisions:
        step = eossl_step(batch, 32) if side == "eossl" else torchgeo_step(batch)
        bf16 = precision == "bf16"
        median_step(step, 1, bf16)  # warm-up (oneDNN primitive creation)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            median_step(step, steps, bf16)
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        print(f"{side} {precision}: {total / 1e6 / (steps + 1):.3f} s of operator time per step")
        for e in sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:14]:
            share = 100 * e.self_cpu_time_total / total
            print(f"  {e.key:45s} {share:5.1f}%  {e.self_cpu_time_total / 1e3 / (steps + 1):8.1f} ms/step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per side per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--json", help="also write the rounds to this JSON file")
    parser.add_argument("--loss-curve", type=int, default=0, metavar="N", help="print two N-step loss curves")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="profile N steps instead")
    parser.add_argument("--side", choices=["eossl", "torchgeo"], default="eossl", help="what --profile profiles")
    args = parser.parse_args()
    if args.profile:
        profile(args.profile, args.batch, args.precision, args.side)
        return
    if args.loss_curve:
        loss_curves(args.loss_curve, args.batch)
        return
    try:
        import torchgeo  # noqa: F401
    except ImportError:
        sys.exit("TorchGeo is not installed: run with `uv run --with torchgeo==0.8.1 --with requests python ...`")
    results = compare(args)
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
