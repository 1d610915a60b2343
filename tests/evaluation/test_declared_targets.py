"""An evaluation on a store that is not the synthetic Earth: tasks come from the declared targets, by
name or by kind, with their own class counts, strata and ignore values; nothing assumes `label`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from eossl.config import ConfigError, EvaluateConfig, validate_config
from eossl.data.modality import Modality
from eossl.data.store import SampleStore, StoreWriter
from eossl.data.targets import Target
from eossl.evaluation import PROTOCOLS, TASK_KINDS
from eossl.evaluation.data import resolve_tasks
from eossl.evaluation.runner import run_evaluate

N, SIZE = 96, 16
LANDSAT = Modality(name="l8", kind="optical", bands=("blue", "green", "red", "nir", "swir1", "swir2"),
                   dtype="uint16", gsd_m=(30.0,) * 6, scale=10000.0, nodata=0)  # fmt: skip
TINY = {"min_steps": 2, "max_steps": 2, "batch_size": 16, "validations": 1, "patience": 0}


@pytest.fixture(scope="module")
def field_store(tmp_path_factory):
    """96 fields seen by a Landsat-like sensor: crop type (3 classes, brightness-coded), yield, a crop mask
    with unlabelled pixels (255), a canopy-height map; no `label`, no `location_id`."""
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 3, N)
    base = (1000 + 1500 * crop)[:, None, None, None]
    images = (base + rng.integers(0, 300, (N, 6, SIZE, SIZE))).astype(np.uint16)
    mask = np.broadcast_to(crop[:, None, None, None], (N, 1, SIZE, SIZE)).astype(np.uint8).copy()
    mask[:, :, :2] = 255  # unlabelled rows
    height = (rng.random((N, 1, SIZE, SIZE)) * 5 + crop[:, None, None, None]).astype(np.float32)
    path = tmp_path_factory.mktemp("fields") / "store"
    extra = {"crop_map": ((1, SIZE, SIZE), "uint8"), "height": ((1, SIZE, SIZE), "float32")}
    writer = StoreWriter(path, N, {"l8": LANDSAT}, extra_arrays=extra)
    table = pd.DataFrame({"field": np.arange(N), "crop": crop, "yield": 2.0 + crop + rng.normal(0, 0.1, N)})
    writer.write({"l8": images, "crop_map": mask, "height": height}, table)
    return writer.close(targets=[
        Target("crop_type", "single-label", column="crop", class_names=("wheat", "maize", "rice")),
        Target("yield_t_ha", "regression", column="yield", strata="crop_type"),
        Target("crop_mask", "segmentation", array="crop_map", class_names=("wheat", "maize", "rice"),
               ignore_index=255, strata="crop_type"),
        Target("canopy_height", "pixel-regression", array="height"),
    ])  # fmt: skip


def _config(store, out, **extra) -> EvaluateConfig:
    raw = {"out": str(out), "data": {"store": str(store), "modality": "l8"}, "inits": ["random", "image-stats"],
           "tasks": ["crop_type", "yield_t_ha"], "fractions": [0.5, 1.0], "seeds": [0],
           "linear": {"weight_decays": [1e-2], "max_iter": 30}, "knn": {"ks": [3]}, "finetune": {"enabled": False},
           "prediction_maps": 1, **extra}  # fmt: skip
    return validate_config(EvaluateConfig, raw)


def test_tasks_resolve_by_target_name_or_kind(field_store):
    store = SampleStore(field_store)
    tasks = resolve_tasks(["single-label", "yield_t_ha", "crop_mask"], store)
    assert [(t.name, t.target.name, t.kind.name) for t in tasks] == [
        ("single-label", "crop_type", "single-label"),
        ("yield_t_ha", "yield_t_ha", "regression"),
        ("crop_mask", "crop_mask", "segmentation"),
    ]
    assert [t.num_classes for t in tasks] == [3, 0, 3] and tasks[1].stratify == "crop_type"
    with pytest.raises(ConfigError, match=r"'tasks': 'label' is neither a target of store .* crop_type"):
        resolve_tasks(["label"], store)
    with pytest.raises(ConfigError, match=r"'multi-label' is a task kind, and store .* declares 0 targets of it"):
        resolve_tasks(["multi-label"], store)
    # the default task list keeps the kinds the store has
    assert [t.name for t in resolve_tasks(["single-label", "multi-label"], store, explicit=False)] == ["single-label"]


def test_a_store_with_its_own_target_names_is_evaluated(field_store, tmp_path):
    results = run_evaluate(_config(field_store, tmp_path / "ev"), log=lambda _: None)
    assert set(results.task) == {"crop_type", "yield_t_ha"}
    assert set(zip(results.task, results.kind, strict=True)) == {("crop_type", "single-label"),
                                                                  ("yield_t_ha", "regression")}  # fmt: skip
    assert set(results[results.task == "yield_t_ha"].protocol) == {"linear"}  # kNN votes on classes only
    accuracy = results[(results.metric == "accuracy") & (results.init == "image-stats") & (results.fraction == 1.0)]
    assert (accuracy.value > 0.9).all()  # brightness codes the crop: band statistics see it
    r2 = results[(results.metric == "r2") & (results.init == "image-stats") & (results.fraction == 1.0)]
    assert (r2.value > 0.5).all()
    subsets = json.loads((tmp_path / "ev" / "label_subsets.json").read_text())["subsets"]
    assert set(subsets) == {"crop_type"}  # yield is stratified by crop type, as declared
    report = (tmp_path / "ev" / "report.md").read_text()
    assert "## crop_type: accuracy" in report and "## yield_t_ha: r2" in report


def test_dense_targets_with_ignored_pixels_and_pixel_regression(field_store, tmp_path):
    cfg = _config(field_store, tmp_path / "ev", inits=["random"], tasks=["crop_mask", "canopy_height"],
                  fractions=[1.0], linear={"enabled": False}, knn={"enabled": False},
                  frozen={"enabled": True, **TINY})  # fmt: skip
    results = run_evaluate(cfg, log=lambda _: None)
    miou = results[results.metric == "mIoU"].value
    assert len(miou) == 1 and 0 <= miou.iloc[0] <= 1
    assert set(results[results.task == "canopy_height"].metric) == {"r2", "rmse", "mae"}
    maps = torch.load(tmp_path / "ev" / "predictions" / "canopy_height-frozen-random.pt", weights_only=True)
    assert maps.dtype == torch.float32 and maps.shape == (1, SIZE, SIZE)
    truth = torch.load(tmp_path / "ev" / "predictions" / "crop_mask-inputs.pt", weights_only=True)["truth"]
    assert (truth == 255).any()  # unlabelled pixels are kept in the truth and left out of the metrics


def test_every_registered_unit_has_its_section():
    fields = EvaluateConfig.model_fields
    assert {"knn", "linear", "frozen", "finetune", "adapter", "multitask"} <= set(PROTOCOLS.names())
    assert all(name.replace("-", "_") in fields for name in PROTOCOLS.names())
    assert "external" in fields
    from eossl.data.targets import TARGET_KINDS

    assert set(TASK_KINDS.names()) <= set(TARGET_KINDS)
