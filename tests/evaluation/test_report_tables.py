"""The report reads primary metrics, task order and dense tasks from each row's task kind (results
schema v4's ``kind`` column), protocol order and baselines from the evaluation registries."""

from __future__ import annotations

import pickle

import pandas as pd
import pytest
import torch

from eossl.evaluation.registry import INITS, baseline_inits, protocol_rank
from eossl.evaluation.report import (
    comparisons,
    is_baseline,
    labels_saved_table,
    multitask_comparisons,
    overview_table,
    render_markdown,
    summarise,
    table,
    write_report,
)
from eossl.evaluation.results import (
    REQUIRED_COLUMNS,
    RESULT_COLUMNS,
    SCHEMA_VERSION,
    ResultsError,
    load_results,
    merge_runs,
    task_kinds,
)

METRICS = {"single-label": ("accuracy", "macro_f1"), "regression": ("rmse", "r2", "mae"),
           "segmentation": ("pixel_accuracy", "mIoU"), "pixel-regression": ("r2", "rmse")}  # fmt: skip


def _rows(task: str, kind: str | None, inits: dict[str, tuple[float, ...]], protocols=("linear",),
          fractions=(0.1, 1.0)) -> list[dict]:  # fmt: skip
    """Rows of every metric of ``kind``; each init's per-seed values, shifted per fraction and metric."""
    return [
        {"init": init, "protocol": protocol, "task": task, **({"kind": kind} if kind else {}), "fraction": f,
         "seed": seed, "metric": metric, "value": v + f / 10 + i / 100, "modality": "s2", "num_labels": int(100 * f),
         "trainable_params": 0}
        for protocol in protocols for init, values in inits.items() for f in fractions
        for seed, v in enumerate(values) for i, metric in enumerate(METRICS[kind or task])
    ]  # fmt: skip


PRETRAINED = {"simclr": (0.70, 0.74, 0.71), "random": (0.50, 0.53, 0.49)}


def _custom() -> pd.DataFrame:
    """User-named tasks: ``yield`` (a regression) listed before ``crop_type`` (single-label)."""
    return pd.DataFrame(_rows("yield", "regression", PRETRAINED) + _rows("crop_type", "single-label", PRETRAINED))


def test_custom_task_names_use_their_kinds_primary_metrics():
    results = _custom()
    assert task_kinds(results) == {"yield": "regression", "crop_type": "single-label"}
    report = render_markdown(results)
    # tasks in kind order (single-label before regression), the primary metric's table first
    headings = [line for line in report.splitlines() if line.startswith("## crop_type") or line.startswith("## yield")]
    assert headings == ["## crop_type: accuracy", "## crop_type: macro_f1", "## yield: r2", "## yield: rmse",
                        "## yield: mae"]  # fmt: skip
    assert "| protocol (trainable encoder params) | init | crop_type (accuracy) | yield (r2) |" in report
    assert "### crop_type: is A better than B? (paired over seeds, accuracy)" in report
    assert "### yield: is A better than B? (paired over seeds, r2)" in report
    comps = comparisons(results)
    assert set(comps.task) == {"crop_type", "yield"} and len(comps) == 2 * 2  # 2 tasks x 2 fractions
    # the primary tables carry the 95% interval, the others not
    accuracy = report.split("## crop_type: accuracy")[1].split("##")[0]
    macro_f1 = report.split("## crop_type: macro_f1")[1].split("##")[0]
    assert "[" in accuracy and "[" not in macro_f1


def test_labels_saved_and_multitask_read_the_kind():
    results = _custom()
    scratch = [{**r, "steps": 50, "converged": True} for task, kind in (("yield", "regression"),
               ("crop_type", "single-label")) for r in _rows(task, kind, {"random": (0.80, 0.80, 0.80)},
               protocols=("finetune",), fractions=(1.0,))]  # fmt: skip
    both = pd.concat([results, pd.DataFrame(scratch)], ignore_index=True)
    assert list(summarise(both).columns[:3]) == ["task", "kind", "metric"]
    saved = labels_saved_table(both)
    assert dict(zip(saved.task, saved.metric, strict=True)) == {"crop_type": "accuracy", "yield": "r2"}
    assert saved.set_index("task").reference["yield"] == "random (finetune)"
    multi = pd.DataFrame(
        _rows("crop_type", "single-label", PRETRAINED, protocols=("finetune", "multitask-fixed"), fractions=(0.1,))
        + _rows("yield", "regression", PRETRAINED, protocols=("finetune", "multitask-fixed"), fractions=(0.1,))
    )
    comps = multitask_comparisons(multi)
    assert dict(zip(comps.task, comps.metric, strict=True)) == {"crop_type": "accuracy", "yield": "r2"}
    assert list(comps.task[comps.init == "simclr"]) == ["crop_type", "yield"]  # kind order


def test_frames_without_kind_read_kind_as_task():
    results = pd.DataFrame(_rows("regression", None, PRETRAINED) + _rows("single-label", None, PRETRAINED))
    assert "kind" not in results
    assert task_kinds(results) == {"regression": "regression", "single-label": "single-label"}
    report = render_markdown(results)
    assert report.index("## single-label: accuracy") < report.index("## regression: r2")
    assert set(summarise(results).kind) == {"regression", "single-label"}


def test_unknown_kinds_get_tables_but_no_primary_metric():
    rows = _rows("single-label", "single-label", PRETRAINED)
    odd = [{**r, "task": "odd", "kind": "not-a-kind"} for r in rows]
    report = render_markdown(pd.DataFrame(rows + odd))
    assert "## odd: accuracy" in report and "odd: is A better" not in report
    assert report.index("## single-label: accuracy") < report.index("## odd: accuracy")  # unknown kinds last


def test_tables_of_kind_named_tasks_are_unchanged():
    """The demo prints ``table`` for the same results as before the task registry: byte for byte."""
    rows = []
    for protocol, bump in (("finetune", 0.05), ("linear", 0.0), ("knn", -0.03)):
        for init, values in {"simclr": (0.70, 0.74, 0.71), "random": (0.50, 0.53, 0.49),
                             "image-stats": (0.55, 0.57, 0.56)}.items():  # fmt: skip
            for f in (0.1, 1.0):
                for seed, x in enumerate(values):
                    value = round(x + bump + f / 10 + seed * 0.001, 4)
                    rows.append({"init": init, "protocol": protocol, "task": "single-label", "fraction": f,
                                 "seed": seed, "metric": "accuracy", "value": value, "num_labels": int(100 * f),
                                 "trainable_params": 0})  # fmt: skip
    expected = "\n".join([
        "| protocol | init | 10% | 100% |",
        "|---|---|---:|---:|",
        "| knn | simclr | 0.698 ± 0.021 | 0.788 ± 0.021 |",
        "| knn | random | 0.488 ± 0.021 | 0.578 ± 0.021 |",
        "| knn | image-stats | 0.541 ± 0.011 | 0.631 ± 0.011 |",
        "| linear | simclr | 0.728 ± 0.021 | 0.818 ± 0.021 |",
        "| linear | random | 0.518 ± 0.021 | 0.608 ± 0.021 |",
        "| linear | image-stats | 0.571 ± 0.011 | 0.661 ± 0.011 |",
        "| finetune | simclr | **0.778 ± 0.021** | **0.868 ± 0.021** |",
        "| finetune | random | 0.568 ± 0.021 | 0.658 ± 0.021 |",
        "| finetune | image-stats | 0.621 ± 0.011 | 0.711 ± 0.011 |",
    ])  # fmt: skip
    results = pd.DataFrame(rows)
    assert table(summarise(results), "single-label", "accuracy") == expected
    assert table(summarise(results.assign(kind="single-label")), "single-label", "accuracy") == expected
    linear = comparisons(results).query("protocol == 'linear'")
    assert list(zip(linear.a, linear.b, strict=True)) == [("simclr", "image-stats"), ("simclr", "random")] * 2
    assert linear.difference.round(6).tolist() == [0.156667, 0.21, 0.156667, 0.21]


def test_protocol_order_follows_the_registry():
    protocols = ("multitask-fixed", "finetune", "adapter-lora", "frozen", "linear", "knn")
    results = pd.DataFrame(_rows("crop_type", "single-label", PRETRAINED, protocols=protocols))
    text = table(summarise(results), "crop_type", "accuracy")
    seen = list(dict.fromkeys(line.split(" | ")[0].removeprefix("| ") for line in text.splitlines()[2:]))
    assert seen == ["knn", "linear", "frozen", "adapter-lora", "finetune", "multitask-fixed"]
    assert seen == sorted(protocols, key=protocol_rank)
    assert protocol_rank("knn") < protocol_rank("linear") < protocol_rank("finetune") < protocol_rank("multitask-x")
    overview = overview_table(summarise(results), results, 0.1)
    rows = [line.split(" (")[0].removeprefix("| ") for line in overview.splitlines()[2:]]
    assert list(dict.fromkeys(rows)) == seen
    # pretrained before baselines within each protocol
    assert [line.split(" | ")[1] for line in text.splitlines()[2:4]] == ["simclr", "random"]


def test_baselines_come_from_the_registry(monkeypatch):
    assert set(baseline_inits()) == {"random", "image-stats", "external", "torchgeo"}
    inits = {"simclr": (0.70, 0.74, 0.71), "random": (0.50, 0.53, 0.49), "image-stats": (0.55, 0.57, 0.56),
             "external": (0.6, 0.61, 0.62), "mine": (0.4, 0.43, 0.41)}  # fmt: skip
    results = pd.DataFrame(_rows("crop_type", "single-label", inits, fractions=(0.1,)))
    comps = comparisons(results)
    assert set(comps.b) == set(baseline_inits()) - {"torchgeo"} and set(comps.a) == {"simclr", "mine"}
    assert is_baseline("random (run-a)") and not is_baseline("simclr")
    assert set(comparisons(results, baselines=("random",)).b) == {"random"}

    class MineInit:
        baseline = True

    monkeypatch.setitem(INITS._units, "mine", MineInit)  # a baseline init registered by a plugin
    assert "mine" in baseline_inits()
    assert set(comparisons(results).a) == {"simclr"} and "mine" in set(comparisons(results).b)


def test_write_report_with_custom_tasks_and_external_label(tmp_path):
    inits = {**PRETRAINED, "imagenet": (0.6, 0.61, 0.62)}
    results = pd.DataFrame(_rows("crop_type", "single-label", inits) + _rows("yield", "regression", inits))
    points = [(task, metric, step) for task, metric in (("yield", "r2"), ("crop_type", "accuracy")) for step in (1, 2)]
    curves = pd.DataFrame([{"init": "simclr", "protocol": "finetune", "task": task, "fraction": 1.0, "seed": 0,
                            "step": step, "epoch": step / 2, "metric": metric, "value": 0.5 + step / 10}
                           for task, metric, step in points])  # fmt: skip
    curves.to_csv(tmp_path / "curves.csv", index=False)
    path = write_report(results, tmp_path, {"external": {"label": "imagenet"}})
    report = path.read_text()
    assert "crop_type (accuracy)" in report and "yield (r2)" in report
    assert (tmp_path / "label_efficiency.png").exists() and (tmp_path / "convergence.png").exists()
    comps = pd.read_csv(tmp_path / "comparisons.csv")
    assert set(comps.b) == {"random", "imagenet"} and set(comps.a) == {"simclr"}
    assert list(pd.read_csv(tmp_path / "summary.csv").columns[:2]) == ["task", "kind"]


def _maps(folder, task: str, truth: torch.Tensor, predicted: dict[str, torch.Tensor]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    inputs = {"images": torch.rand(len(truth), 3, 8, 8), "truth": truth, "bands": ["B4", "B3", "B2"],
              "class_names": ["a", "b", "c"] if not truth.is_floating_point() else []}  # fmt: skip
    torch.save(inputs, folder / f"{task}-inputs.pt")
    for name, maps in predicted.items():
        torch.save(maps, folder / f"{task}-{name}.pt")


def test_dense_kinds_get_prediction_maps_loaded_safely(tmp_path):
    rows = (_rows("landcover", "segmentation", PRETRAINED, fractions=(1.0,))
            + _rows("height", "pixel-regression", PRETRAINED, fractions=(1.0,))
            + _rows("crop_type", "single-label", PRETRAINED, fractions=(1.0,)))  # fmt: skip
    predictions = tmp_path / "predictions"
    classes = torch.randint(0, 3, (2, 1, 8, 8))
    _maps(predictions, "landcover", classes, {"linear-simclr": torch.randint(0, 3, (2, 8, 8)).to(torch.uint8)})
    _maps(predictions, "height", torch.rand(2, 1, 8, 8) * 30, {"linear-simclr": torch.rand(2, 1, 8, 8) * 30})
    _maps(predictions, "landcover-fine", classes, {"linear-simclr": classes[:, 0].to(torch.uint8)})  # a prefix task
    from eossl.evaluation.plots import _prediction_files, plot_prediction_maps

    assert [p.name for p in _prediction_files(predictions, "landcover")] == ["landcover-linear-simclr.pt"]
    write_report(pd.DataFrame(rows), tmp_path)
    assert (tmp_path / "prediction_maps_landcover.png").exists() and (tmp_path / "prediction_maps_height.png").exists()
    assert not (tmp_path / "prediction_maps_crop_type.png").exists()
    report = (tmp_path / "report.md").read_text()
    assert "(prediction_maps_landcover.png)" in report and "(prediction_maps_height.png)" in report

    # a saved map that would unpickle an arbitrary object is refused, not executed
    class Payload:
        def __reduce__(self):
            return (print, ("unpickled!",))

    with open(predictions / "height-linear-random.pt", "wb") as file:
        pickle.dump(Payload(), file, protocol=2)
    with pytest.raises(pickle.UnpicklingError):
        plot_prediction_maps(predictions, "height", tmp_path / "maps.png")


def _csv(folder, rows: list[dict], columns: list[str] | None = None):
    folder.mkdir(parents=True)
    frame = pd.DataFrame(rows)
    (frame if columns is None else frame.reindex(columns=columns)).to_csv(folder / "results.csv", index=False)
    return folder


def test_v3_results_load_with_kind_task_and_newer_versions_are_refused(tmp_path):
    v3_columns = [c for c in RESULT_COLUMNS if c != "kind"]
    assert "kind" not in REQUIRED_COLUMNS and RESULT_COLUMNS.index("kind") == RESULT_COLUMNS.index("task") + 1
    v3_rows = [{**r, "schema_version": 3} for r in _rows("segmentation", None, PRETRAINED)]
    v3 = _csv(tmp_path / "v3", v3_rows, v3_columns)
    loaded = load_results(v3)
    assert list(loaded.columns) == RESULT_COLUMNS and (loaded.kind == loaded.task).all()
    v1 = _csv(tmp_path / "v1", _rows("regression", None, PRETRAINED), REQUIRED_COLUMNS)  # no schema_version
    assert set(load_results(v1).kind) == {"regression"}
    v4 = _csv(tmp_path / "v4", [{**r, "schema_version": SCHEMA_VERSION} for r in _custom().to_dict("records")],
              RESULT_COLUMNS)  # fmt: skip
    assert task_kinds(load_results(v4)) == {"yield": "regression", "crop_type": "single-label"}
    newer = _csv(tmp_path / "v5", [{**r, "schema_version": SCHEMA_VERSION + 1} for r in _custom().to_dict("records")])
    with pytest.raises(ResultsError, match=f"schema version {SCHEMA_VERSION + 1}"):
        load_results(newer)
    # merging a v3 run with a v4 run: every row has its kind, curves stay without one
    (v4 / "curves.csv").write_text("init,protocol,task,fraction,seed,step,epoch,metric,value\n"
                                   "simclr,finetune,yield,1.0,0,1,0.5,r2,0.5\n")  # fmt: skip
    merged, curves = merge_runs([v3, v4])
    assert merged.kind.notna().all() and set(merged.kind) == {"segmentation", "regression", "single-label"}
    assert set(merged.init) == {"simclr (v3)", "random (v3)", "simclr (v4)", "random (v4)"}
    assert "kind" not in curves and set(curves.init) == {"simclr (v4)"}
    report = render_markdown(merged)
    assert report.index("## crop_type: accuracy") < report.index("## segmentation: mIoU") < report.index("## yield: r2")
