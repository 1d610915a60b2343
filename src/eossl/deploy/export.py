"""``eossl export``: one encoder of a pretraining run as a folder timm loads (and, with ``--format onnx``,
an ONNX graph checked with onnxruntime), with a generated model card.

The folder is written whole or not at all; before it is renamed into place its encoder is loaded
back through timm's ``local-dir:`` loader and its features compared with eossl's on a random batch
(the largest absolute difference is kept in ``config.json`` as ``eossl.timm_check``).
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from eossl.checkpoints import PretrainedEncoder, load_pretrained_encoders, read_checkpoint
from eossl.deploy.folders import atomic_folder
from eossl.deploy.metadata import folder_entry, input_metadata
from eossl.deploy.model_card import model_card
from eossl.errors import CheckpointError, ConfigError
from eossl.models.fusion import StemFusedEncoder
from eossl.models.interface import Encoder
from eossl.models.timm_export import (
    CONFIG_FILE,
    encoder_recipe,
    load_encoder_folder,
    plain_timm_model,
    same_features,
    timm_config,
    write_encoder_folder,
)

ExportFormat = Literal["timm", "onnx"]
TORCHGEO_FILE = "torchgeo_backbone.ckpt"
TORCHGEO_ARGS = {"in_chans", "num_classes", "output_stride", "global_pool"}  # what TorchGeo's trainers rebuild
ONNX_FILE = "model.onnx"
ONNX_OPSET = 18


@dataclass
class ExportRequest:
    """What to export: the encoder of ``modality`` (None: the checkpoint's first, the anchor) of the
    run folder or checkpoint ``source`` into folder ``out``; ``report``: an ``eossl evaluate`` run whose
    table goes into the model card."""

    source: Path
    out: Path
    format: ExportFormat = "timm"
    modality: str | None = None
    report: Path | None = None
    overwrite: bool = False


@dataclass
class ExportResult:
    """The written folder, what it holds and the measured agreement with eossl's encoder."""

    out: Path
    modality: str
    architecture: str
    needs_eossl: bool
    timm_max_abs_diff: float
    onnx_max_abs_diff: float | None = None
    files: list[str] = field(default_factory=list)


def find_checkpoint(source: str | Path) -> Path:
    """The checkpoint of ``source``: a ``.ckpt`` file, or a pretraining run folder (``checkpoints/last.ckpt``)."""
    source = Path(source)
    if source.is_dir():
        last = source / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise CheckpointError(f"'{source}' is not a pretraining run folder: it has no checkpoints/last.ckpt")
        return last
    if not source.exists():
        raise CheckpointError(f"'{source}' does not exist (pass a pretraining run folder or its .ckpt file)")
    return source


def _image_size(pretrained: PretrainedEncoder, config: dict) -> int:
    """The patch size the encoder was pretrained on: the encoder's ``img_size``, else the store's."""
    size = pretrained.encoder_config.get("img_size")
    if size:
        return int(size)
    from eossl.data.store import SampleStore

    try:
        store = SampleStore(config["data"]["store"])
        return int(store.array(pretrained.modalities[0]).shape[-1])
    except Exception:  # the store is not here: 224, timm's default, is only informational for CNNs
        return 224


def _write_torchgeo_backbone(folder: Path, encoder: Encoder, config: dict) -> bool:
    """The encoder as the Lightning-style checkpoint TorchGeo's trainers take as ``weights=`` (CNNs whose
    timm arguments TorchGeo rebuilds), or False when TorchGeo could not rebuild the architecture."""
    plain = plain_timm_model(encoder, config["eossl"]["recipe"])
    if plain is None or not set(config["model_args"]) <= TORCHGEO_ARGS:
        return False
    state = {f"model.{k}": v.detach().cpu().contiguous() for k, v in plain.state_dict().items()}
    torch.save({"hyper_parameters": {"model": config["architecture"], "in_channels": config["model_args"]["in_chans"]},
                "state_dict": state}, folder / TORCHGEO_FILE)  # fmt: skip
    return True


def export_onnx(encoder: Encoder, example: torch.Tensor, path: Path) -> float:
    """``encoder`` as an ONNX graph (input ``input`` with a dynamic batch, output ``features``), checked
    with onnxruntime on a batch of another size: returns the largest absolute difference to PyTorch."""
    import onnxruntime

    batch = torch.export.Dim("batch", min=1)
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        torch.onnx.export(encoder.eval(), (example,), str(path), input_names=["input"], output_names=["features"],
                          dynamic_shapes=({0: batch},), dynamo=True, opset_version=ONNX_OPSET, verbose=False,
                          external_data=False)  # fmt: skip
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    check = torch.randn(example.shape[0] + 1, *example.shape[1:], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = encoder(check).numpy()
    got = session.run(None, {"input": check.numpy()})[0]
    return float(abs(got - expected).max())


def export_encoder(request: ExportRequest) -> ExportResult:
    """Export one encoder of a pretraining checkpoint (see the module docstring)."""
    checkpoint = find_checkpoint(request.source)
    encoders = load_pretrained_encoders(checkpoint)
    modality = request.modality or next(iter(encoders))
    if modality not in encoders:
        raise ConfigError(
            f"checkpoint '{checkpoint}' has no encoder for modality '{modality}' (it has: {', '.join(encoders)})"
        )
    if request.report is not None and not Path(request.report).exists():
        raise ConfigError(f"--report '{request.report}' does not exist (pass an 'eossl evaluate' run folder)")
    raw = read_checkpoint(checkpoint)
    meta = raw["eossl"]
    pretrained = encoders[modality]
    encoder = pretrained.encoder.eval()
    size = _image_size(pretrained, meta["config"])
    channels = {m.name: m.num_bands for m in pretrained.bands}
    wavelengths = {m.name: m.wavelengths_nm for m in pretrained.bands}
    fusion = "stems" if isinstance(encoder, StemFusedEncoder) else "none"
    recipe = encoder_recipe(pretrained.encoder_config, channels, size, wavelengths, fusion)
    provenance = {"method": meta["method"], "store": str(meta["config"]["data"]["store"]),
                  "steps": int(raw.get("global_step", 0)), "epochs": int(raw.get("epoch", 0)),
                  "encoder": pretrained.encoder_config, "checkpoint": str(checkpoint)}  # fmt: skip
    entry = folder_entry("encoder", input_metadata(pretrained.bands, pretrained.stats, size), pretraining=provenance)
    config = timm_config(encoder, recipe, pretrained.stats["mean"], pretrained.stats["std"], entry)
    example = torch.randn(2, sum(channels.values()), size, size, generator=torch.Generator().manual_seed(0))
    onnx_diff = None
    with atomic_folder(request.out, request.overwrite) as folder:
        write_encoder_folder(folder, encoder, config)
        files = [CONFIG_FILE, "model.safetensors"]
        if _write_torchgeo_backbone(folder, encoder, config):
            files.append(TORCHGEO_FILE)
        timm_diff = same_features(encoder, load_encoder_folder(folder), example)
        config["eossl"]["timm_check"] = {"max_abs_diff": timm_diff, "input_shape": list(example.shape)}
        if request.format == "onnx":
            onnx_diff = export_onnx(encoder, example, folder / ONNX_FILE)
            files.append(ONNX_FILE)
            shape = ["batch", *example.shape[1:]]
            config["eossl"]["onnx"] = {"opset": ONNX_OPSET, "input": "input", "output": "features",
                                       "input_shape": shape, "max_abs_diff": onnx_diff}  # fmt: skip
        config["eossl"]["files"] = [*files, "README.md"]
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")
        (folder / "README.md").write_text(model_card(config, str(request.out), request.report), encoding="utf-8")
    return ExportResult(Path(request.out), modality, config["architecture"], config["eossl"]["needs_eossl"],
                        timm_diff, onnx_diff, config["eossl"]["files"])  # fmt: skip
