"""The import pipeline: dask LocalCluster = in-process, a killed import leaves no (or the old) store,
per-sample checks, and the command line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from eossl.cli.main import app
from eossl.data.importers import IMPORTERS, Importer, ImporterOptions, ImportItem, ImportPlan, Sample
from eossl.data.sensors import sensor_modality
from eossl.data.store import SampleStore
from eossl.errors import ImportDataError
from tests.data.eurosat.data import write_eurosat


def _eurosat(source: Path, store: Path, **options) -> SampleStore:
    importer = IMPORTERS["eurosat"]()
    return SampleStore(importer.write(source, store, importer.config(**options)))


def test_local_cluster_import_equals_in_process_import(tmp_path):
    source = write_eurosat(tmp_path / "src", per_class=2)
    alone = _eurosat(source, tmp_path / "alone", workers=0, shard_size=4, chunk_size=2)
    cluster = _eurosat(source, tmp_path / "cluster", workers=2, shard_size=4, chunk_size=2)
    np.testing.assert_array_equal(alone.read("s2"), cluster.read("s2"))
    pd.testing.assert_frame_equal(alone.table, cluster.table)
    assert alone.stats == cluster.stats
    report = json.loads((tmp_path / "cluster" / "import_report.json").read_text())
    assert report["samples"] == 20 and report["options"]["workers"] == 2 and report["source_megabytes"] > 0


class _Twice(Importer):
    """Every file read twice under the same key: the second is a duplicate."""

    name = "twice"

    def plan(self, source: Path, options: ImporterOptions) -> ImportPlan:
        files = sorted(source.rglob("*.tif"))[:3]
        items = [ImportItem(f.stem, (f,)) for f in files] + [ImportItem(files[0].stem + "-again", (files[0],))]
        return ImportPlan({"s2": sensor_modality("s2-l1c")}, items)

    def read(self, item: ImportItem, options: ImporterOptions) -> list[Sample]:
        import rasterio

        with rasterio.open(item.files[0]) as f:
            values = f.read()
        return [Sample(item.files[0].stem, {"s2": values}, {"location_id": item.files[0].stem})]


def test_duplicate_sample_ids_are_refused_or_skipped(tmp_path):
    source = write_eurosat(tmp_path / "src", per_class=1)
    with pytest.raises(ImportDataError, match="duplicate sample id 'AnnualCrop_1'"):
        _Twice().write(source, tmp_path / "s", ImporterOptions(workers=0))
    store = SampleStore(_Twice().write(source, tmp_path / "s", ImporterOptions(workers=0, on_error="skip")))
    assert len(store) == 3
    report = json.loads((tmp_path / "s" / "import_report.json").read_text())
    assert report["skipped"] == 1 and "duplicate" in report["skipped_items"][0]["reason"]


def _kill_during_import(source: Path, store: Path) -> None:
    """Start ``eossl data import`` in another process and kill -9 it once it has begun writing."""
    code = "from eossl.cli.main import app; app()"
    args = [sys.executable, "-c", code, "data", "import", "eurosat", str(source), str(store), "--workers", "0"]
    if store.exists():
        args.append("--overwrite")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(store.parent.glob(f".{store.name}.tmp-*")) and time.monotonic() < deadline:
        assert proc.poll() is None, "the import finished before it could be killed"
        time.sleep(0.02)
    proc.kill()
    proc.wait()


def test_killed_import_leaves_no_store_or_the_old_one_and_a_rerun_starts_clean(tmp_path):
    source = write_eurosat(tmp_path / "src", per_class=30, size=8)
    store = tmp_path / "store"
    _kill_during_import(source, store)
    assert not store.exists()
    assert list(tmp_path.glob(".store.tmp-*"))  # what the killed writer left
    _eurosat(source, store, workers=0, shard_size=32)
    assert not list(tmp_path.glob(".store.tmp-*")) and len(SampleStore(store)) == 300
    before = (store / "metadata.csv").read_bytes()
    _kill_during_import(source, store)
    assert (store / "metadata.csv").read_bytes() == before and len(SampleStore(store)) == 300


def test_cli_imports_lists_importers_and_names_bad_options(tmp_path):
    source = write_eurosat(tmp_path / "src", per_class=1)
    runner = CliRunner()
    result = runner.invoke(app, ["data", "import", "eurosat", str(source), str(tmp_path / "s"), "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "10 samples from 10 items" in result.output and "0 skipped" in result.output
    listed = runner.invoke(app, ["data", "importers"])
    assert listed.exit_code == 0 and "eurosat" in listed.output
    unknown = runner.invoke(app, ["data", "import", "no-such", str(source), str(tmp_path / "t")])
    assert unknown.exit_code == 2 and "unknown importer 'no-such'" in unknown.output
    bad = runner.invoke(app, ["data", "import", "eurosat", str(source), str(tmp_path / "t"), "colour=red"])
    assert bad.exit_code == 2 and "colour" in bad.output
