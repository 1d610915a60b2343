"""``eossl bench``: throughput of the pieces the demo's budget depends on, printed as a table.

Numbers are measured on the machine it runs on; nothing here asserts a speed.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from eossl.data.datamodule import StoreDataset, _already_collated
from eossl.data.store import SampleStore
from eossl.data.synth.generator import SynthSpec, synthesize_store
from eossl.training import bf16_autocast


def _rate(count: int, seconds: float) -> str:
    rate = count / max(seconds, 1e-9)
    return f"{rate:,.1f}" if rate < 10 else f"{rate:,.0f}"


def bench_generation(path: Path, locations: int) -> tuple[str, str, str]:
    spec = SynthSpec(num_locations=locations)
    start = time.perf_counter()
    synthesize_store(path, spec, overwrite=True)
    return ("synthetic generation (write store)", _rate(spec.num_samples, time.perf_counter() - start), "samples/s")


def bench_reads(store: SampleStore, batches: int, batch_size: int = 128) -> list[tuple[str, str, str]]:
    rows = []
    rng = np.random.default_rng(0)
    n = min(len(store), batches * batch_size)
    for workers in sorted({0, os.cpu_count() or 1}):
        dataset = StoreDataset(store, rng.permutation(len(store))[:n], ["s2"], ["label"])
        loader = DataLoader(
            dataset, batch_size=batch_size, shuffle=True, num_workers=workers, collate_fn=_already_collated
        )
        start = time.perf_counter()
        seen = sum(len(b["s2"]) for b in loader)
        rows.append(
            (f"store random read from disk, {workers} worker(s)", _rate(seen, time.perf_counter() - start), "samples/s")
        )
    start = time.perf_counter()
    store.read("s2")
    rows.append(("store full load into memory (s2)", _rate(len(store), time.perf_counter() - start), "samples/s"))
    return rows


def bench_pretrain_step(
    store: SampleStore, steps: int, batch_size: int = 128, method: str = "simclr"
) -> tuple[str, str, str]:
    from dataclasses import asdict

    from eossl.data.config import DataConfig
    from eossl.methods import METHODS
    from eossl.methods.config import PretrainConfig

    size = int(store.read("s2", np.arange(1)).shape[-1])
    pretrain = PretrainConfig(data=DataConfig(store=store.path), method={"name": method})
    pretrain.encoder = pretrain.encoder.with_img_size(size)
    cfg = pretrain.model_dump(mode="json")
    names = ["s2", "s1"] if METHODS[method].config.cross_modal else ["s2"]  # cross-modal: S2 paired with S1
    modalities = [asdict(store.modalities[n]) for n in names]
    model = METHODS[method](cfg, modalities, {n: store.stats[n] for n in names})
    bands = "+".join(str(len(m["bands"])) for m in modalities)
    inputs = f"{'+'.join(names)} ({bands} bands)" if len(names) > 1 else f"{bands}-band"
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    # temporal pairing (e.g. SeCo) also needs other dates of each place: s2@1, ...
    dataset = StoreDataset(store, np.arange(len(store)), names, [], dates=pretrain.method.dates)
    batch = {k: v.to(device) for k, v in dataset.__getitems__(list(range(batch_size))).items()}
    model.log = lambda *a, **k: None  # no trainer attached
    for i in range(steps + 2):
        if i == 2:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with bf16_autocast(device):
            loss = model.training_step(batch, i)
        optimizer.zero_grad()
        loss.backward()
        model.on_after_backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (
        f"{method} step, {cfg['encoder']['name']} {inputs} {size}x{size}, batch {batch_size} ({device.type})",
        _rate(steps * batch_size, time.perf_counter() - start),
        "samples/s",
    )


DENSE_PAIRS = (
    ("resnet18", "unet"), ("resnet18", "deeplabv3plus"), ("resnet18", "upernet"), ("resnet50", "unet"),
    ("resnet18-detail", "unet"), ("vit_small_patch16_224", "upconv"), ("vit_small_patch16_224", "upernet"),
    ("swin_tiny_patch4_window7_224", "upernet"), ("wavelength-vit-s", "upconv"),
)  # fmt: skip
"""The encoder x decoder pairs ``eossl bench --dense`` times by default (ViTs with 8-pixel patches)."""


def _saved_bytes(step) -> int:
    """Bytes of the tensors autograd saves for backward during ``step()`` (the activation memory)."""
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return total


def bench_dense_step(encoder_name: str, decoder_name: str, bands: int, size: int, batch_size: int,
                     steps: int, classes: int = 11) -> tuple[str, str, str, str]:  # fmt: skip
    """One segmentation training step (encoder + decoder, cross-entropy, AdamW) timed over ``steps``;
    memory: CUDA peak allocation on a GPU, else parameters + gradients + Adam state + saved activations."""
    from eossl.models.decoders import build_decoder
    from eossl.models.encoders import encoder_from_config, is_vision_transformer, takes_wavelengths

    config = {"name": encoder_name, "img_size": size}
    if is_vision_transformer(encoder_name):
        config["patch_size"] = 8
    wavelengths = [float(w) for w in torch.linspace(450, 2400, bands)] if takes_wavelengths(encoder_name) else None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    encoder = encoder_from_config(config, bands, wavelengths=wavelengths).to(device)
    decoder = build_decoder(decoder_name, encoder, size, classes).to(device)
    parameters = [*encoder.parameters(), *decoder.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=1e-3)
    x = torch.randn(batch_size, bands, size, size, device=device)
    y = torch.randint(0, classes, (batch_size, size, size), device=device)

    def forward() -> torch.Tensor:
        with bf16_autocast(device):
            logits = decoder(encoder.forward_pyramid(x), (size, size))
        return torch.nn.functional.cross_entropy(logits.float(), y)

    def step() -> None:
        loss = forward()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        memory = torch.cuda.max_memory_allocated()
    else:
        state = sum(p.numel() * p.element_size() for p in parameters) * 4  # weights, gradients, Adam's 2 moments
        memory = state + _saved_bytes(lambda: forward().backward())
    name = f"{encoder_name} + {decoder_name}, {bands} bands {size}x{size}, batch {batch_size} ({device.type})"
    return name, _rate(steps * batch_size, seconds), "samples/s", f"{memory / 2**20:,.0f} MiB"


def run_dense_benchmarks(quick: bool = False, pairs: list[tuple[str, str]] | None = None,
                         bands: int = 12) -> str:  # fmt: skip
    """Training-step throughput and memory of encoder x decoder pairs (default :data:`DENSE_PAIRS`)."""
    size, batch, steps = (32, 4, 1) if quick else (64, 16, 5)
    rows = [bench_dense_step(e, d, bands, size, batch, steps) for e, d in pairs or DENSE_PAIRS]
    width = max(len(r[0]) for r in rows)
    lines = [f"{'dense training step':<{width}}  {'throughput':>12}  {'unit':<9}  memory", "-" * (width + 40)]
    lines += [f"{name:<{width}}  {value:>12}  {unit:<9}  {memory}" for name, value, unit, memory in rows]
    lines.append(f"(torch {torch.__version__}, {torch.get_num_threads()} threads; CPU memory: weights, gradients, "
                 "Adam state and the activations saved for backward)")  # fmt: skip
    return "\n".join(lines)


def run_benchmarks(quick: bool = False, store: Path | None = None, methods: list[str] | None = None) -> str:
    """Generation, store reads and one pretraining step per method in ``methods`` (default: SimCLR)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench-store"
        rows.append(bench_generation(path, 64 if quick else 500))
        source = SampleStore(store) if store else SampleStore(path)
        rows += bench_reads(source, 4 if quick else 20)
        for method in methods or ["simclr"]:
            rows.append(bench_pretrain_step(source, 2 if quick else 10, 16 if quick else 128, method))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'benchmark':<{width}}  {'throughput':>12}  unit", "-" * (width + 24)]
    lines += [f"{name:<{width}}  {value:>12}  {unit}" for name, value, unit in rows]
    lines.append(
        f"(torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'})"
    )
    return "\n".join(lines)
