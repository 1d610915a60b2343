"""Shuffled batch reads: one GeoTIFF per sample (rasterio) against the eossl store, side by side.

    uv run --frozen python benchmarks/store_vs_geotiff.py --dir /tmp/eossl-bench-store
    uv run --frozen python benchmarks/store_vs_geotiff.py --samples 1000 --rounds 1 --data random   # quick

Writes ``--samples`` 13 x 64 x 64 uint16 samples twice into ``--dir`` (GeoTIFFs and source arrays are
reused when present; the store is rewritten every run, so that it has the writer's current layout):

- one uncompressed GeoTIFF per sample, as ``../shared/bench/anchor_geotiff_read.py`` writes them (the
  way EuroSAT-style datasets are stored), read with rasterio through a torch DataLoader: random order
  (``shuffle=True``), batch 64, ``--geotiff-workers`` workers, float32 batches;
- an eossl store (:class:`~eossl.data.store.StoreWriter`, the writer's default chunks, shards and
  codec; a 13-band modality, scale 10000, nodata 0), read through ``EODataModule.loader`` with
  ``in_memory=False``: batch 64, float32 batches in physical units (the batch contract), shuffled by
  :class:`~eossl.data.sampling.ChunkShuffleSampler` (``chunks``) and, for reference, by a full
  shuffle (``full``, :class:`~torch.utils.data.RandomSampler`), with each of ``--workers``;
  ``--zarr-reads`` adds the chunk-shuffled store read through zarr instead of the shard reader.

Two kinds of data (``--data``): ``random`` (uint16 0 .. 10000, as the anchor: nearly incompressible)
and ``synthetic`` (the eossl synthetic Earth's Sentinel-2 patches at 64 px, 12 bands, plus a 13th
standing in for B10; smooth fields that compress about 2x; generating 4,000 takes a minute or two and
is cached in ``--dir``).

Every reader first reads one untimed epoch (warming the page cache and starting its persistent
workers); then ``--rounds`` rounds each time one epoch of every reader in turn, so that the readers
alternate on the same machine. The table gives the median samples/s over rounds, MB/s of uint16
sample data delivered, and the ratio to the GeoTIFF reader. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from eossl.data.store import SampleStore

BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
SHAPE = (len(BANDS), 64, 64)
SAMPLE_BYTES = int(np.prod(SHAPE)) * 2
BATCH = 64


class GeoTiffFolder(Dataset):
    """One GeoTIFF per sample, read with rasterio (the anchor's reader)."""

    def __init__(self, folder: Path, count: int) -> None:
        self.folder, self.count = folder, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> torch.Tensor:
        import rasterio

        with rasterio.open(self.folder / f"{i:06d}.tif") as f:
            return torch.from_numpy(f.read().astype(np.float32))


def random_samples(count: int) -> np.ndarray:
    """The anchor's data: per sample ``integers(0, 10000)`` from ``default_rng(0)``, in file order."""
    rng = np.random.default_rng(0)
    return np.stack([rng.integers(0, 10000, SHAPE, dtype=np.uint16) for _ in range(count)])


def synthetic_samples(count: int, cache: Path) -> np.ndarray:
    """Sentinel-2 patches of the synthetic Earth at 64 px, with B10 (cirrus) stood in for by B9 / 10."""
    if cache.exists():
        cached = np.load(cache, mmap_mode="r")
        if len(cached) >= count:
            return np.ascontiguousarray(cached[:count])
    from eossl.data.synth.generator import SynthSpec, generate_chunks

    spec = SynthSpec(num_locations=-(-count // 4), seasons=4, patch_size=SHAPE[-1])
    s2 = np.concatenate([arrays["s2"] for arrays, _ in generate_chunks(spec)])[:count]
    b10 = np.maximum(s2[:, 9:10] // 10, 1)
    values = np.concatenate([s2[:, :10], b10, s2[:, 10:]], axis=1).astype(np.uint16)
    np.save(cache, values)
    return values


def write_geotiffs(folder: Path, values: np.ndarray) -> None:
    import rasterio
    from rasterio.transform import from_origin

    folder.mkdir(parents=True, exist_ok=True)
    for i, sample in enumerate(values):
        path = folder / f"{i:06d}.tif"
        if path.exists():
            continue
        profile = {"driver": "GTiff", "width": SHAPE[2], "height": SHAPE[1], "count": SHAPE[0], "dtype": "uint16"}
        transform = from_origin(500000, 5000000, 10, 10)
        with rasterio.open(path, "w", **profile, crs="EPSG:32633", transform=transform) as f:
            f.write(sample)


def write_store(path: Path, values: np.ndarray, chunk_size: int | None, shard_size: int | None) -> Path:
    from eossl.data.modality import Modality
    from eossl.data.store import StoreWriter

    modality = Modality("s2", "optical", BANDS, "uint16", (10.0,) * len(BANDS), scale=10000.0, nodata=0)
    sizes = {k: v for k, v in (("chunk_size", chunk_size), ("shard_size", shard_size)) if v is not None}
    writer = StoreWriter(path, len(values), {"s2": modality}, overwrite=True, **sizes)
    for start in range(0, len(values), 512):
        block = values[start : start + 512]
        writer.write({"s2": block}, pd.DataFrame({"location_id": np.arange(start, start + len(block))}))
    return writer.close()


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@dataclass
class Reader:
    name: str
    workers: int
    loader: DataLoader
    count: Callable[[object], int]
    rates: list[float]


def time_epoch(reader: Reader) -> float:
    start, seen = time.perf_counter(), 0
    for batch in reader.loader:
        seen += reader.count(batch)
    return seen / (time.perf_counter() - start)


def readers_for(tifs: Path, store: Path, count: int, args: argparse.Namespace) -> list[Reader]:
    from eossl.data.datamodule import EODataModule

    tiff = DataLoader(
        GeoTiffFolder(tifs, count),
        batch_size=BATCH,
        shuffle=True,
        num_workers=args.geotiff_workers,
        persistent_workers=args.geotiff_workers > 0,
    )
    readers = [Reader("GeoTIFF per sample (rasterio)", args.geotiff_workers, tiff, len, [])]
    for mode in ("chunks", "full"):
        for workers in args.workers:
            dm = EODataModule(store, ["s2"], batch_size=BATCH, num_workers=workers, val=0.0, test=0.0, in_memory=False)
            loader = dm.loader("train", BATCH, shuffle=mode, num_workers=workers, persistent_workers=True)
            name = f"eossl store, {mode} shuffle"
            readers.append(Reader(name, workers, loader, lambda b: len(b["s2"]), []))
    if args.zarr_reads:  # the same store read through zarr (SampleStore.fast_reads off), in process
        dm = EODataModule(store, ["s2"], batch_size=BATCH, val=0.0, test=0.0, in_memory=False)
        dm.store.fast_reads = False
        loader = dm.loader("train", BATCH, shuffle="chunks", num_workers=0)
        readers.append(Reader("eossl store through zarr, chunks shuffle", 0, loader, lambda b: len(b["s2"]), []))
    return readers


def bench(kind: str, args: argparse.Namespace) -> list[str]:
    root = args.dir / kind
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    values = random_samples(args.samples) if kind == "random" else synthetic_samples(args.samples, root / "s2.npy")
    write_geotiffs(root / f"tifs-{args.samples}", values)
    store = write_store(root / "store", values, args.chunk_size, args.shard_size)
    del values
    chunks = SampleStore(store).array("s2").chunks[0]
    print(f"[{kind}] data written in {time.perf_counter() - start:.0f} s; store chunks of {chunks} rows", flush=True)
    tif_bytes, store_bytes = folder_bytes(root / f"tifs-{args.samples}"), folder_bytes(store / "arrays.zarr")
    readers = readers_for(root / f"tifs-{args.samples}", store, args.samples, args)
    for reader in readers:
        time_epoch(reader)  # warm-up: page cache, persistent workers
    for r in range(args.rounds):
        for reader in readers:
            reader.rates.append(time_epoch(reader))
        cells = ", ".join(f"{x.name} w{x.workers}: {x.rates[-1]:.0f}" for x in readers)
        print(f"[{kind}] round {r + 1}: {cells}  (load {os.getloadavg()[0]:.1f})", flush=True)
    anchor = statistics.median(readers[0].rates)
    raw = args.samples * SAMPLE_BYTES
    rows = [
        f"| {kind} | {x.name} | {x.workers} | {statistics.median(x.rates):,.0f} | "
        f"{statistics.median(x.rates) * SAMPLE_BYTES / 1e6:,.0f} | {statistics.median(x.rates) / anchor:.1f}x | "
        f"{' / '.join(f'{v:,.0f}' for v in x.rates)} |"
        for x in readers
    ]
    print(f"[{kind}] on disk: GeoTIFFs {tif_bytes / 1e6:,.0f} MB, store {store_bytes / 1e6:,.0f} MB "
          f"(raw {raw / 1e6:,.0f} MB, store ratio {raw / store_bytes:.2f})", flush=True)  # fmt: skip
    return rows


def import_throughput(kind: str, tifs: Path, root: Path, args: argparse.Namespace) -> list[str]:
    """``eossl data import geotiff-folder`` of the same GeoTIFFs, in process and on a dask LocalCluster."""
    import json

    from eossl.data.importers import IMPORTERS

    importer = IMPORTERS["geotiff-folder"]()
    rows = []
    for workers in args.import_workers:
        options = importer.config(sensor="s2-l1c", workers=workers, overwrite=True)
        start = time.perf_counter()
        store = importer.write(tifs, root / f"imported-w{workers}", options)
        wall = time.perf_counter() - start
        report = json.loads((store / "import_report.json").read_text())
        where = report["read_in"]
        rows.append(
            f"| {kind} | {where} | {report['samples']:,} | {wall:.1f} | {report['samples'] / wall:,.0f} | "
            f"{report['source_megabytes'] / wall:,.1f} | {report['decoded_megabytes'] / wall:,.1f} |"
        )
        print(f"[{kind}] import, {where}: {wall:.1f} s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="loader workers of the store")
    parser.add_argument("--geotiff-workers", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/eossl-bench-store"))
    parser.add_argument("--data", nargs="+", choices=["random", "synthetic"], default=["random", "synthetic"])
    parser.add_argument(
        "--import-workers",
        type=int,
        nargs="*",
        default=[0, 2],
        help="dask workers of the import throughput runs (0: in process; none: skip)",
    )
    parser.add_argument("--chunk-size", type=int, default=None, help="store rows per chunk (default: the writer's)")
    parser.add_argument("--shard-size", type=int, default=None, help="store rows per shard (default: the writer's)")
    parser.add_argument("--zarr-reads", action="store_true", help="also read the store through zarr (slow)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()
    rows = [row for kind in args.data for row in bench(kind, args)]
    imports = [
        row
        for kind in args.data
        for row in import_throughput(kind, args.dir / kind / f"tifs-{args.samples}", args.dir / kind, args)
    ]
    print(f"\n{args.samples} samples of 13 x 64 x 64 uint16, batch {BATCH}, {args.rounds} rounds, "
          f"{os.cpu_count()} CPUs, load average {load[0]:.1f} before and {os.getloadavg()[0]:.1f} after\n")  # fmt: skip
    print("| data | reader | workers | samples/s (median) | MB/s (uint16) | vs GeoTIFF | rounds |")
    print("|---|---|---:|---:|---:|---:|---|")
    print("\n".join(rows))
    if imports:
        print("\n| data | import read in | samples | wall s (with start) | samples/s | MB/s files | MB/s decoded |")
        print("|---|---|---:|---:|---:|---:|---:|")
        print("\n".join(imports))


if __name__ == "__main__":
    main()
