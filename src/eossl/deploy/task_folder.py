"""A deployable task model as a folder: ``model.safetensors`` (every weight: normaliser, encoder,
adapter, heads) and ``config.json`` (what it takes and predicts, how to rebuild it, how it scored).

``config.json``'s ``eossl`` entry (kind ``task-model``) holds the input (modalities with units and
nodata, bands with wavelengths and GSD, per-band normalisation, the patch size trained on, the two
dates of a change model), the encoder ``recipe`` (see :mod:`eossl.models.timm_export`), the trainable
mode (``frozen``, ``full`` or an adapter with its options), the tasks (kind, target, classes), the
dense options, the metrics on validation and test, and how it was trained. Loading rebuilds the same
architecture from that JSON and loads the weights strictly: nothing in the folder is executed.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from eossl.data.metadata import stacked_modality
from eossl.data.modality import Modality
from eossl.data.normalize import BandNormalizer
from eossl.data.targets import Target
from eossl.deploy.metadata import check_entry, modalities_of
from eossl.errors import CheckpointError
from eossl.evaluation.finetune import TaskModel
from eossl.evaluation.protocols._trained_config import TrainedProtocolConfig
from eossl.evaluation.registry import TASK_KINDS
from eossl.evaluation.tasks._base import DenseOptions, Task
from eossl.models.adapters import AdapterOptions, configure_trainable
from eossl.models.timm_export import CONFIG_FILE, WEIGHTS_FILE, build_from_recipe, read_folder_config
from eossl.training import bf16_autocast

KIND = "task-model"


def task_json(task: Task) -> dict[str, Any]:
    """A task as plain data (its kind by name, its declared target, its class count)."""
    target = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(task.target).items()}
    return {"name": task.name, "kind": task.kind.name, "target": target, "num_classes": task.num_classes}


def task_from_json(entry: dict[str, Any], options: DenseOptions) -> Task:
    target = Target(**{k: tuple(v) if isinstance(v, list) else v for k, v in entry["target"].items()})
    if entry["kind"] not in TASK_KINDS:
        raise CheckpointError(f"task '{entry['name']}' is of kind '{entry['kind']}', unknown to this eossl")
    return Task(entry["name"], TASK_KINDS[entry["kind"]](options), target, int(entry["num_classes"]))


def input_modality(bands: list[Modality]) -> Modality:
    """The modality a model reads: the one modality, or the stack of several (``s2+s1``, two dates)."""
    return bands[0] if len(bands) == 1 else stacked_modality("+".join(m.name for m in bands), bands)


def save_task_model(folder: Path, model: TaskModel, entry: dict[str, Any]) -> None:
    """``model``'s weights and ``{"eossl": entry}`` into the (existing, empty) ``folder``."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "pt", "producer": "eossl"})
    (folder / CONFIG_FILE).write_text(json.dumps({"eossl": entry}, indent=2), encoding="utf-8")


@dataclass
class DeployedModel:
    """A task model loaded from its folder, in eval mode on the CPU.

    Calling it takes ``[B, bands, H, W]`` in physical units (NaN where there is no data) and returns
    every task's outputs by task name (logits for classes, values for regression). ``bands`` are the
    input modalities stacked in order, ``stats`` their per-band normalisation.
    """

    model: TaskModel
    entry: dict[str, Any]
    bands: list[Modality]
    stats: dict[str, list[float]]
    tasks: list[Task]
    folder: Path

    @property
    def band_names(self) -> list[str]:
        return [b for m in self.bands for b in m.bands]

    @property
    def image_size(self) -> int:
        return int(self.entry["image_size"])

    @property
    def dates(self) -> list[str]:
        """The modalities of the two dates of a change model (before, after), else ``[]``."""
        return list(self.entry.get("dates", []))

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every task's outputs (float32) on ``x``, computed on the model's device under the same bf16
        autocast as the metrics in ``config.json`` (where the device runs bf16 natively)."""
        device = next(self.model.parameters()).device
        with bf16_autocast(device):
            return {name: out.float() for name, out in self.model(x.to(device)).items()}


def load_task_model(folder: str | Path) -> DeployedModel:
    """The task model of a folder written by ``eossl finetune`` (see the module docstring)."""
    folder = Path(folder)
    entry = read_folder_config(folder)["eossl"]
    check_entry(entry, KIND, f"'{folder}'")
    try:
        bands = modalities_of(entry, f"'{folder}'")
        stats = {k: list(v) for k, v in entry["normalization"].items() if k in ("mean", "std", "p2", "p98")}
        options = DenseOptions(**entry["dense"])
        tasks = [task_from_json(t, options) for t in entry["tasks"]]
        adapter = entry["adapter"]
        encoder = configure_trainable(build_from_recipe(entry["recipe"]), adapter["mode"],
                                      **dataclasses.asdict(AdapterOptions(**adapter["options"])))  # fmt: skip
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"'{folder}': config.json's eossl entry is incomplete ({exc!r})") from None
    modality = input_modality(bands)
    normalizer = BandNormalizer({modality.name: stats}, [modality.name])
    model = TaskModel(encoder, normalizer, modality, tasks, TrainedProtocolConfig(), 1, int(entry["image_size"]),
                      train_norm_statistics=False)  # fmt: skip
    state = load_file(str(folder / WEIGHTS_FILE))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"'{folder}': the weights do not fit the model config.json describes: "
                              f"{str(exc).splitlines()[0]} {str(exc).splitlines()[1:2]}") from None  # fmt: skip
    return DeployedModel(model.eval(), entry, bands, stats, tasks, folder)
