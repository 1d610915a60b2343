"""Throughput and peak memory of ``eossl predict`` on whole scenes of growing size, in one run.

    uv run --frozen python benchmarks/predict_scene.py --work /tmp/eossl-bench-predict
    uv run --frozen python benchmarks/predict_scene.py --sizes 2000 10000 --tile 128 --repeats 2

Writes one synthetic 12-band uint16 Sentinel-2 GeoTIFF per ``--sizes`` entry (``N`` for a square, or
``WIDTHxHEIGHT`` px) into ``--work`` (EPSG:32633, 10 m, tiled 512 x 512, deflate with predictor 2;
smooth noise around the model's band means plus fine noise, a nodata corner), written block row by
block row, and reused when present. The model is ``--model`` or a tiny random-init segmentation model
(``test_resnet``, 2 steps of :func:`eossl.deploy.finetune.run_finetune` on a small synthetic store,
built once into ``WORK/model``); its speed, not its accuracy, is measured.

Each prediction runs in a fresh Python process started by this script (``--child``), so each peak is
that run's own, alternating between the sizes ``--repeats`` times (2k, 10k, 2k, 10k). A child reports on
its last stdout line, as JSON, the :class:`~eossl.deploy.predict.PredictSummary` (seconds, tiles/s and
``VmHWM``, the peak resident set size) and ``VmHWM`` after its imports, before predicting (the
libraries' share). The table is printed as markdown and written to ``WORK/predict_scene.md`` and
``.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SPACING = 64  # pixels between the smooth noise's coarse nodes
BLOCK = 512


def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def build_model(work: Path) -> Path:
    """A tiny random-init segmentation model (``forest``) trained for 2 steps, in ``work/model``."""
    from eossl.data.synth.generator import SynthSpec, synthesize_store
    from eossl.deploy.finetune import FinetuneConfig, run_finetune

    folder = work / "model"
    if not (folder / "config.json").is_file():
        spec = SynthSpec(num_locations=40, seasons=2, patch_size=32, seed=3, forest_targets=True)
        store = synthesize_store(work / "model-store", spec)
        training = {"epochs": 1, "min_steps": 2, "max_steps": 2, "lr": [1e-3], "encoder_lr_factor": [1.0],
                    "validations": 1, "batch_size": 16}  # fmt: skip
        cfg = FinetuneConfig(out=folder, overwrite=True, data={"store": store}, init="random", task="forest",
                             encoder={"name": "test_resnet", "img_size": 32}, training=training)  # fmt: skip
        run_finetune(cfg, log=lambda s: None)
    return folder


def parse_size(text: str) -> tuple[int, int]:
    """``2000`` (square) or ``WIDTHxHEIGHT`` as (width, height)."""
    width, _, height = text.partition("x")
    return int(width), int(height or width)


def write_scene(path: Path, width: int, height: int, stats: dict[str, list[float]], seed: int = 0) -> Path:
    """A ``width`` x ``height`` 12-band uint16 DN scene (reflectance x 10000) around ``stats``' band means."""
    import rasterio
    from rasterio.transform import from_origin

    from eossl.data.modality import S2_BANDS

    if path.is_file():
        return path
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((12, height // SPACING + 2, width // SPACING + 2), dtype=np.float32)
    pos = np.arange(width) / SPACING
    idx, frac = pos.astype(int), (pos % 1).astype(np.float32)
    along = coarse[:, :, idx] * (1 - frac) + coarse[:, :, idx + 1] * frac  # [12, nodes, width], x interpolated
    mean = np.array(stats["mean"][:12], np.float32)[:, None, None] * 10000
    std = np.array(stats["std"][:12], np.float32)[:, None, None] * 10000 * 0.7
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 12, "dtype": "uint16", "nodata": 0,
               "crs": "EPSG:32633", "transform": from_origin(500_000, 5_000_000, 10, 10), "tiled": True,
               "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate", "predictor": 2,
               "BIGTIFF": "IF_SAFER"}  # fmt: skip
    tmp = path.with_name(f".{path.name}.tmp")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.descriptions = S2_BANDS
        for top in range(0, height, BLOCK):
            rows = np.arange(top, min(top + BLOCK, height))
            iy, ty = rows // SPACING, ((rows / SPACING) % 1).astype(np.float32)[:, None]
            smooth = along[:, iy] * (1 - ty) + along[:, iy + 1] * ty
            noise = np.random.default_rng([seed, top]).standard_normal(smooth.shape, dtype=np.float32)
            dn = np.clip(mean + std * (smooth + 0.1 * noise), 1, 65535).astype(np.uint16)
            dn[:, rows[:, None] + np.arange(width)[None] < min(width, height) // 8] = 0  # a nodata corner
            dst.write(dn, window=rasterio.windows.Window(0, top, width, len(rows)))
    tmp.rename(path)
    return path


def child(args: argparse.Namespace) -> None:
    """One prediction in this process; its summary as JSON on the last line."""
    import torch

    from eossl.deploy.predict import PredictRequest, predict

    torch.set_num_threads(args.threads)
    before = _vm_hwm_mb()
    request = PredictRequest(model=Path(args.model), scenes=[Path(args.scene)], out=Path(args.out),
                             tile=args.tile, overlap=args.overlap, batch_size=args.batch_size, overwrite=True,
                             device=args.device)  # fmt: skip
    summary = predict(request)
    print(json.dumps({"tiles": summary.tiles, "seconds": summary.seconds, "tiles_per_second": summary.tiles_per_second,
                      "peak_rss_mb": summary.peak_rss_mb, "rss_after_imports_mb": before, "width": summary.width,
                      "height": summary.height, "warnings": summary.warnings}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/eossl-bench-predict"))
    parser.add_argument("--sizes", nargs="+", default=["2000", "10000"], help="N (square) or WIDTHxHEIGHT px")
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--overlap", type=int, default=None, help="default: tile // 4")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="rounds over --sizes, alternating")
    parser.add_argument("--model", type=Path, default=None, help="a task-model folder (default: a tiny one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scene", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    from eossl.deploy.task_folder import load_task_model

    args.work.mkdir(parents=True, exist_ok=True)
    model = args.model or build_model(args.work)
    stats = load_task_model(model).stats
    scenes = {}
    for size in args.sizes:
        started = time.perf_counter()
        width, height = parse_size(size)
        scenes[size] = write_scene(args.work / f"scene-{width}x{height}.tif", width, height, stats)
        print(f"scene {width} x {height}: {scenes[size].stat().st_size / 2**20:.0f} MiB "
              f"({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
    rows = []
    for round_ in range(args.repeats):
        for size in args.sizes:
            command = [sys.executable, __file__, "--child", "--model", str(model), "--scene", str(scenes[size]),
                       "--out", str(args.work / f"pred-{size}.tif"), "--tile", str(args.tile), "--batch-size",
                       str(args.batch_size), "--threads", str(args.threads), "--device", args.device]  # fmt: skip
            if args.overlap is not None:
                command += ["--overlap", str(args.overlap)]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            result = {"size": size, "round": round_ + 1, **json.loads(done.stdout.strip().splitlines()[-1])}
            rows.append(result)
            print(f"  {size} px round {round_ + 1}: {result['tiles']} tiles, {result['seconds']:.1f} s, "
                  f"peak {result['peak_rss_mb']:.0f} MiB", flush=True)  # fmt: skip
    lines = ["| scene px | round | tiles | seconds | tiles/s | Mpx/s | peak RSS MB | RSS after imports MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['width']:,} x {r['height']:,} | {r['round']} | {r['tiles']:,} | {r['seconds']:.1f} | "
                     f"{r['tiles_per_second']:.1f} | {r['width'] * r['height'] / r['seconds'] / 1e6:.2f} | "
                     f"{r['peak_rss_mb']:.0f} | {r['rss_after_imports_mb']:.0f} |")  # fmt: skip
    table = "\n".join(lines)
    print(table)
    (args.work / "predict_scene.md").write_text(table + "\n", encoding="utf-8")
    (args.work / "predict_scene.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
