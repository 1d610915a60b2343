"""``eossl report render`` and ``eossl report compare`` on hand-made results."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from eossl.cli.main import app
from eossl.evaluation.results import RESULT_COLUMNS, SCHEMA_VERSION

runner = CliRunner()


def _run(folder, pretrained: str, values: dict[str, list[float]], version: int = SCHEMA_VERSION,
         task: str = "single-label"):  # fmt: skip
    """A results.csv of linear probes; version 3 files have no ``kind`` column (their task is the kind)."""
    folder.mkdir(parents=True)
    rows = [
        {"init": init, "protocol": "linear", "task": task, "kind": "single-label", "fraction": f, "seed": seed,
         "metric": "accuracy", "value": v + f / 10, "num_labels": int(100 * f), "trainable_params": 0,
         "schema_version": version}
        for init, per_seed in values.items()
        for f in (0.1, 1.0)
        for seed, v in enumerate(per_seed)
    ]  # fmt: skip
    columns = RESULT_COLUMNS if version >= 4 else [c for c in RESULT_COLUMNS if c != "kind"]
    pd.DataFrame(rows).reindex(columns=columns).to_csv(folder / "results.csv", index=False)
    return folder


def test_compare_merges_runs_and_keeps_each_runs_baselines(tmp_path):
    a = _run(tmp_path / "simclr-run", "simclr", {"simclr": [0.7, 0.72, 0.71], "random": [0.5, 0.52, 0.5]})
    b = _run(tmp_path / "mae-run", "mae", {"mae": [0.6, 0.61, 0.6], "random": [0.51, 0.5, 0.5]})
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["report", "compare", str(a), str(b), "--out", str(out)])
    assert result.exit_code == 0, result.output
    merged = pd.read_csv(out / "results.csv")
    assert set(merged.run) == {"simclr-run", "mae-run"}
    assert set(merged.init) == {"simclr", "mae", "random (simclr-run)", "random (mae-run)"}
    report = (out / "report.md").read_text()
    assert "| linear | mae vs random (mae-run) |" in report and "| linear | simclr |" in report
    assert "compared_runs" in report and (out / "report.html").exists()
    comparisons = pd.read_csv(out / "comparisons.csv")
    assert len(comparisons) == 2 * 2 * 2  # 2 pretrained x 2 baselines x 2 fractions


def test_compare_merges_a_v3_run_with_a_run_of_user_named_tasks(tmp_path):
    old = _run(tmp_path / "old", "simclr", {"simclr": [0.7, 0.72, 0.71], "random": [0.5, 0.52, 0.5]}, version=3)
    new = _run(tmp_path / "new", "mae", {"mae": [0.6, 0.61, 0.6], "random": [0.51, 0.5, 0.5]}, task="crop_type")
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["report", "compare", str(old), str(new), "--out", str(out)])
    assert result.exit_code == 0, result.output
    merged = pd.read_csv(out / "results.csv")
    assert list(merged.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    kinds = dict(zip(merged.task, merged.kind, strict=True))
    assert kinds == {"single-label": "single-label", "crop_type": "single-label"}
    report = (out / "report.md").read_text()
    assert "## single-label: accuracy" in report and "## crop_type: accuracy" in report
    assert "### crop_type: is A better than B? (paired over seeds, accuracy)" in report


def test_render_rebuilds_the_report(tmp_path):
    run = _run(tmp_path / "run", "simclr", {"simclr": [0.7, 0.72, 0.71], "random": [0.5, 0.52, 0.5]})
    result = runner.invoke(app, ["report", "render", str(run)])
    assert result.exit_code == 0, result.output
    assert "## single-label: accuracy" in (run / "report.md").read_text()
    assert (run / "label_efficiency.png").exists() and (run / "summary.csv").exists()


def test_render_reads_the_kind_of_user_named_tasks(tmp_path):
    run = _run(tmp_path / "run", "simclr", {"simclr": [0.7, 0.72, 0.71], "random": [0.5, 0.52, 0.5]}, task="crop")
    result = runner.invoke(app, ["report", "render", str(run)])
    assert result.exit_code == 0, result.output
    report = (run / "report.md").read_text()
    assert "## crop: accuracy" in report and "| linear | simclr vs random |" in report
    assert set(pd.read_csv(run / "summary.csv").kind) == {"single-label"}


def test_compare_errors_are_one_clear_line(tmp_path):
    a = _run(tmp_path / "a", "simclr", {"simclr": [0.7], "random": [0.5]})
    newer = _run(tmp_path / "b", "mae", {"mae": [0.6], "random": [0.5]}, version=SCHEMA_VERSION + 1)
    result = runner.invoke(app, ["report", "compare", str(a), str(newer), "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and f"schema version {SCHEMA_VERSION + 1}" in result.output
    result = runner.invoke(app, ["report", "compare", str(a), "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and "at least two runs" in result.output
    result = runner.invoke(app, ["report", "compare", str(a), str(tmp_path / "nope"), "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and "no results at" in result.output
