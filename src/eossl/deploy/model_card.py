"""The README.md of an exported encoder folder: what the encoder is, what it takes, how to load it,
and how it evaluated when a report is given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eossl.evaluation.results import load_results, ordered_tasks, primary_metric
from eossl.evaluation.tables import summarise, table


def _bands_table(entry: dict[str, Any]) -> list[str]:
    norm = entry["normalization"]
    rows = ["| band | modality | wavelength (nm) | GSD (m) | mean | std |", "|---|---|---:|---:|---:|---:|"]
    for i, band in enumerate(entry["bands"]):
        wavelength = "" if band["wavelength_nm"] is None else f"{band['wavelength_nm']:g}"
        rows.append(f"| {band['name']} | {band['modality']} | {wavelength} | {band['gsd_m']:g} | "
                    f"{norm['mean'][i]:.4g} | {norm['std'][i]:.4g} |")  # fmt: skip
    return rows


def _units(entry: dict[str, Any]) -> list[str]:
    lines = []
    for m in entry["modalities"]:
        converted = m["scale"] != 1 or m["offset"]
        scale = f"physical = (stored + {m['offset']:g}) / {m['scale']:g}" if converted else "stored values"
        units = f" ({m['units']})" if m["units"] else ""
        product = m["product"] or "product not declared"
        lines.append(f"- `{m['name']}` ({m['kind']}, {product}): inputs are {scale}{units}; nodata {m['nodata']}")
    return lines


def evaluation_section(report: Path) -> list[str]:
    """The primary-metric table of every task of an ``eossl evaluate`` run (mean ± std over seeds)."""
    results = load_results(report)
    summary = summarise(results)
    kinds = dict(zip(results.task, results.kind, strict=False))
    lines = ["## Evaluation", "", f"From `{report}` (mean ± std over seeds; columns are label fractions).", ""]
    for task in ordered_tasks(results):
        metric = primary_metric(kinds[task])
        rendered = table(summary, task, metric) if metric else ""
        if rendered:
            lines += [f"### {task} ({metric})", "", rendered, ""]
    return lines


def model_card(config: dict[str, Any], folder_name: str, report: Path | None = None) -> str:
    """Markdown of the model card of an encoder folder whose ``config.json`` is ``config``."""
    entry = config["eossl"]
    pre = entry.get("pretraining", {})
    needs = entry["needs_eossl"]
    loader = ["import eossl  # registers eossl_encoder with timm", "import timm"] if needs else ["import timm"]
    lines = [
        f"# {Path(folder_name).name}: {config['architecture']} encoder for {entry['modality']}",
        "",
        f"A `{pre.get('encoder', {}).get('name', config['architecture'])}` encoder pretrained with "
        f"**{pre.get('method', '?')}** for {pre.get('steps', '?')} steps on `{pre.get('store', '?')}` "
        f"(eossl {entry['eossl_version']}). It takes {len(entry['bands'])} bands of {entry['modality']} at "
        f"{entry['image_size']} x {entry['image_size']} px (other sizes work where the architecture allows) and "
        f"gives {config['num_features']} pooled features per image.",
        "",
        "## Load it",
        "",
        "```python",
        *loader,
        f'model = timm.create_model("local-dir:{folder_name}", pretrained=True).eval()',
        "features = model(x)  # x: [B, bands, H, W], normalised as below",
        "```",
        "",
        (
            "This encoder is not expressible with timm's own arguments (eossl stem, spectral or wavelength "
            "layers, or several inputs): `import eossl` registers the timm model `eossl_encoder`, whose "
            "`model_args.recipe` in `config.json` rebuilds it."
            if needs
            else "A plain timm architecture: timm alone loads it, eossl need not be installed."
        ),
        "",
        "## Inputs and normalisation",
        "",
        f"Normalise each band as {entry['normalization']['rule']}; `pretrained_cfg.mean/std` hold the same "
        "values (in physical units, not timm's 0-1 image scale).",
        "",
        *_units(entry),
        "",
        *_bands_table(entry),
        "",
    ]
    if "torchgeo_backbone.ckpt" in entry.get("files", []):
        weights = f"{folder_name}/torchgeo_backbone.ckpt"
        lines += [
            "## In TorchGeo", "", "`torchgeo_backbone.ckpt` is this encoder in the layout TorchGeo's trainers read:",
            "", "```python", "from torchgeo.trainers import ClassificationTask",
            f'task = ClassificationTask(model="{config["architecture"]}", weights="{weights}",',
            f"                          in_channels={len(entry['bands'])}, num_classes=10)", "```", "",
        ]  # fmt: skip
    if entry.get("onnx"):
        onnx = entry["onnx"]
        lines += ["## ONNX", "", f"`model.onnx` (opset {onnx['opset']}, dynamic batch, input `{onnx['input']}` of "
                  f"{onnx['input_shape']}): onnxruntime's features differ from PyTorch's by at most "
                  f"{onnx['max_abs_diff']:.2e} on a random batch.", ""]  # fmt: skip
    if report is not None:
        lines += evaluation_section(report)
    return "\n".join(lines) + "\n"
