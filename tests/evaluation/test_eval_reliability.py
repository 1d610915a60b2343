"""``eossl evaluate`` never loses results, resumes by cells, and refuses bad input before any work: the
output-folder lock, resuming after an interruption (equal to an uninterrupted run), checkpoint bands
against the store's, stores too small to split, and the count of non-finite inputs filled."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eossl.config import EvaluateConfig, PretrainConfig, validate_config
from eossl.data.splits import check_splits, split_by_location
from eossl.data.store import SampleStore
from eossl.data.store_writer import StoreWriter
from eossl.data.synth.generator import SynthSpec, synthesize_store
from eossl.errors import EncoderError, LabelFractionError, StoreError
from eossl.evaluation.inits._base import Init
from eossl.evaluation.inits.image_stats import ImageStatsInit
from eossl.evaluation.runner import run_evaluate
from eossl.evaluation.sink import ResultSink
from eossl.io import OutputFolderError, OutputLock

TINY = {"min_steps": 2, "max_steps": 2, "batch_size": 8, "validations": 2, "patience": 0, "encoder_lr_factor": [1.0]}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """16 locations x 2 seasons of 16x16 samples: 11 training, 2 validation and 3 test locations."""
    return synthesize_store(tmp_path_factory.mktemp("reliability") / "tiny", SynthSpec(16, 2, 16, seed=5))


def _config(store: Path, out: Path, **extra) -> EvaluateConfig:
    """knn and linear at 2 fractions x 2 seeds, fine-tuning at 100% on a grid of 2 learning rates: 10 cells
    of the random init, then 8 of image statistics."""
    raw = {
        "out": str(out), "data": {"store": str(store)}, "inits": ["random", "image-stats"], "tasks": ["single-label"],
        "fractions": [0.5, 1.0], "seeds": [0, 1], "knn": {"ks": [3]},
        "linear": {"weight_decays": [1e-2], "max_iter": 10},
        "finetune": {**TINY, "lr": [1e-3, 1e-2], "fractions": [1.0]}, "prediction_maps": 0, **extra,
    }  # fmt: skip
    return validate_config(EvaluateConfig, raw)


def _copy_store(source: Path, path: Path, s2: np.ndarray, modality) -> Path:
    """``source`` with only its s2 modality, replaced by ``s2`` (stored values) of ``modality``."""
    store = SampleStore(source)
    writer = StoreWriter(path, len(store), {"s2": modality})
    writer.write({"s2": s2}, store.table.drop(columns="sample_id"))
    writer.close(targets=[t for t in store.targets.values() if t.column is not None], dates=store.dates)
    return path


def _count_fits(monkeypatch) -> list[int]:
    import eossl.evaluation.protocols._trained as trained

    fits, fit = [], trained.train_task_model
    monkeypatch.setattr(trained, "train_task_model", lambda *a, **k: fits.append(1) or fit(*a, **k))
    return fits


# -- the lock -----------------------------------------------------------------------------------------
def test_a_second_evaluation_into_a_folder_in_use_fails_at_once(store, tmp_path):
    out = tmp_path / "ev"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from eossl.io import OutputLock; "
         "lock = OutputLock(sys.argv[1], 'eossl evaluate'); lock.__enter__(); print('held', flush=True); "
         "time.sleep(120)", str(out)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.perf_counter()
        with pytest.raises(OutputFolderError, match=rf"'{out}' is in use by eossl evaluate \(pid {holder.pid} "):
            run_evaluate(_config(store, out), log=lambda _: None)
        assert time.perf_counter() - started < 5  # refused before the data or a model is loaded
        assert sorted(p.name for p in out.iterdir()) == [".eossl.lock"]  # nothing written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with OutputLock(out, "test"):  # the kernel released the killed holder's lock
        pass


def test_an_unwritable_output_folder_fails_before_any_work(store, tmp_path, monkeypatch):
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # a file where the output folder's parent should be: not writable, even for root
    import eossl.evaluation.runner as runner

    monkeypatch.setattr(runner, "EvalData", lambda *_: pytest.fail("the data was opened before 'out' was checked"))
    with pytest.raises(OutputFolderError, match=rf"^'out': cannot write into '{blocked / 'ev'}'"):
        run_evaluate(_config(store, blocked / "ev"), log=lambda _: None)


# -- resuming -----------------------------------------------------------------------------------------
def test_an_interrupted_evaluation_resumes_after_its_cells_and_equals_an_uninterrupted_one(
    store, tmp_path, monkeypatch
):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    fits = _count_fits(monkeypatch)
    run_evaluate(_config(store, whole), log=lambda _: None)
    assert len(fits) == 3  # fine-tuning: both grid points on the first seed, its choice on the second
    # interrupted while recording the 10th cell: 4 knn + 4 linear cells done, then fine-tuning on seed 0
    # (its rate chosen on validation); fine-tuning on seed 1 trained but not recorded
    add, calls = ResultSink.add, []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 10:
            raise RuntimeError("interrupted")
        return add(self, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(ResultSink, "add", interrupted)
        with pytest.raises(RuntimeError, match="interrupted"):
            run_evaluate(_config(store, cut), log=lambda _: None)
    assert len(pd.read_csv(cut / "results.csv").drop_duplicates(["protocol", "fraction", "seed"])) == 9
    fits.clear()
    lines: list[str] = []
    run_evaluate(_config(store, cut), log=lines.append)
    assert f"resuming: 9 of 18 cells done in {cut}" in lines
    assert len(fits) == 1  # no done cell retrained; seed 1 reuses the rate seed 0 chose before the interruption
    for name in ("results.csv", "curves.csv"):
        assert (cut / name).read_text() == (whole / name).read_text(), name
    assert json.loads((cut / "summary.json").read_text())["cells_done"] == 18

    # resuming a finished evaluation builds no init, redoes no cell and rewrites the report
    def refuse(*_):
        raise AssertionError("a finished evaluation built an init")

    monkeypatch.setattr(Init, "start", refuse)
    monkeypatch.setattr(ImageStatsInit, "start", refuse)
    (whole / "report.md").unlink()
    before, lines = (whole / "results.csv").read_text(), []
    run_evaluate(_config(store, whole), log=lines.append)
    assert f"resuming: 18 of 18 cells done in {whole}" in lines and (whole / "report.md").exists()
    assert (whole / "results.csv").read_text() == before


def test_another_config_in_the_folder_is_replaced_and_says_so(store, tmp_path):
    out, lines = tmp_path / "ev", []
    knn_only = {"linear": {"enabled": False}, "finetune": {"enabled": False}, "inits": ["image-stats"]}
    run_evaluate(_config(store, out, **knn_only), log=lambda _: None)
    run_evaluate(_config(store, out, **knn_only, seeds=[3]), log=lines.append)
    assert f"replacing the results in '{out}' (its config.yaml differs in 'seeds'): evaluating from the start" in lines
    assert set(pd.read_csv(out / "results.csv").seed) == {3}
    assert not any(line.startswith("resuming") for line in lines)


def test_an_evaluation_killed_mid_run_resumes(store, tmp_path):
    """SIGKILL after some cells are written: the atomic files hold whole cells and the lock is free again."""
    out = tmp_path / "ev"
    cfg = _config(
        store, out, finetune={**TINY, "min_steps": 6, "max_steps": 6, "fractions": [1.0]}, inits=["random"]
    )  # 10 cells: 4 knn, 4 linear, 2 of fine-tuning (after which the child is killed)
    code = ("import sys, yaml; from eossl.config import EvaluateConfig, validate_config; "
            "from eossl.evaluation.runner import run_evaluate; "
            "cfg = validate_config(EvaluateConfig, yaml.safe_load(open(sys.argv[1]))); "
            "run_evaluate(cfg, log=lambda _: None)")  # fmt: skip
    (tmp_path / "cfg.yaml").write_text(json.dumps(cfg.model_dump(mode="json")))
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "cfg.yaml")])
    cells = ["init", "protocol", "fraction", "seed"]
    try:
        deadline = time.time() + 60
        while time.time() < deadline and child.poll() is None:
            if (out / "results.csv").exists() and len(pd.read_csv(out / "results.csv").drop_duplicates(cells)) >= 8:
                break
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    done = len(pd.read_csv(out / "results.csv").drop_duplicates(cells))
    assert 8 <= done < 10
    lines: list[str] = []
    results = run_evaluate(cfg, log=lines.append)
    assert f"resuming: {done} of 10 cells done in {out}" in lines
    assert len(results.drop_duplicates(cells)) == 10 and not results.duplicated([*cells, "metric"]).any()


# -- up-front checks ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(store, tmp_path_factory) -> Path:
    """A 12-band s2 SimCLR checkpoint after one step."""
    from eossl.methods.pretrain import run_pretrain

    raw = {
        "out": str(tmp_path_factory.mktemp("simclr")), "data": {"store": str(store), "batch_size": 8},
        "method": {"name": "simclr"}, "trainer": {"max_steps": 1, "progress_bar": False},
        "health": {"knn_every_n_steps": 0, "knn_bank_size": 16, "knn_query_size": 8},
    }  # fmt: skip
    return run_pretrain(validate_config(PretrainConfig, raw))


def test_a_checkpoint_of_other_bands_than_the_store_fails_before_any_work(store, checkpoint, tmp_path):
    source = SampleStore(store)
    s2, modality = source.read("s2"), source.modalities["s2"]
    picks = [1, 2, 3, 7, 10, 11]
    fewer = replace(modality, **{k: tuple(getattr(modality, k)[i] for i in picks)
                                 for k in ("bands", "gsd_m", "wavelengths_nm")})  # fmt: skip
    six = _copy_store(store, tmp_path / "six", s2[:, picks], fewer)
    out = tmp_path / "ev"
    cfg = _config(six, out, checkpoint=str(checkpoint), inits=["checkpoint"])
    message = (f"checkpoint '{checkpoint}' encodes 12 bands of 's2' (B1, B2, B3, ..., B12); store '{six}' "
               "modality 's2' has 6 bands (B2, B3, B4, B8, B11, B12)")  # fmt: skip
    with pytest.raises(EncoderError) as error:
        run_evaluate(cfg, log=lambda _: None)
    assert str(error.value) == message
    assert not out.exists()  # nothing written, not even the folder
    order = list(range(12))[::-1]
    reversed_ = replace(modality, **{k: tuple(getattr(modality, k)[i] for i in order)
                                     for k in ("bands", "gsd_m", "wavelengths_nm")})  # fmt: skip
    backwards = _copy_store(store, tmp_path / "backwards", s2[:, order], reversed_)
    with pytest.raises(EncoderError, match=r"in another order \(B12, B11, B9, \.\.\., B1\)"):
        run_evaluate(_config(backwards, out, checkpoint=str(checkpoint), inits=["checkpoint"]), log=lambda _: None)


@pytest.mark.parametrize("locations", [1, 5])
def test_a_store_too_small_to_split_fails_before_any_work(locations, tmp_path):
    tiny = synthesize_store(tmp_path / "tiny", SynthSpec(locations, 2, 16, seed=1))
    out = tmp_path / "ev"
    plural = "s" * (locations != 1)
    with pytest.raises(StoreError) as error:
        run_evaluate(_config(tiny, out), log=lambda _: None)
    assert str(error.value) == (
        f"store '{tiny}' has {locations} location{plural} (column 'location_id'); evaluation splits by location into "
        "train/val/test (data.val 0.1, data.test 0.2) and needs at least 6"
    )
    assert not out.exists()


def test_split_checks_name_what_is_missing():
    table = pd.DataFrame({"place": np.repeat(np.arange(8), 2)})
    splits = split_by_location(table, val=0.1, test=0.2, group="place")  # 8 places: test 2, val 1, train 5
    check_splits(splits, table, "S", val=0.1, test=0.2, group="place")
    with pytest.raises(StoreError, match=r"^store 'S': evaluation needs a test split, but 'data.test' is 0"):
        check_splits(split_by_location(table, 0.1, 0.0, group="place"), table, "S", val=0.1, test=0.0, group="place")
    # a pretraining that validates needs train and val only
    no_test = split_by_location(table, 0.2, 0.0, group="place")
    check_splits(no_test, table, "S", ("train", "val"), val=0.2, test=0.0, group="place", purpose="pretraining")
    official = {"train": np.arange(4), "val": np.array([], dtype=int), "test": np.arange(4, 16)}
    carved = r"split column 'split' leaves val without samples.*2 locations \(column 'place'\) of training data"
    with pytest.raises(StoreError, match=rf"{carved} at data.val 0.1 and needs at least 6"):
        check_splits(official, table, "S", val=0.1, test=0.2, group="place", official="split")


def test_a_fraction_too_small_for_the_training_split_fails_before_any_work(store, tmp_path):
    with pytest.raises(LabelFractionError, match=r"label fraction 0\.01 of 22 training samples gives 0 labels"):
        run_evaluate(_config(store, tmp_path / "ev", fractions=[0.01, 1.0]), log=lambda _: None)
    assert not (tmp_path / "ev").exists()


# -- non-finite inputs --------------------------------------------------------------------------------
def test_non_finite_inputs_filled_in_evaluation_are_counted_and_reported(store, tmp_path):
    source = SampleStore(store)
    s2 = source.read("s2").copy()
    s2[:, 0, 0, :2] = source.modalities["s2"].nodata  # two missing pixels of band B1 in every sample: NaN when read
    holes = _copy_store(store, tmp_path / "holes", s2, source.modalities["s2"])
    lines: list[str] = []
    knn_only = {"inits": ["random"], "linear": {"enabled": False}, "finetune": {"enabled": False}}
    run_evaluate(_config(holes, tmp_path / "knn", **knn_only), log=lines.append)
    # features of every split once (48 samples), BatchNorm statistics of the random init on the training split
    expected = 2 * 32 + 2 * 22
    assert json.loads((tmp_path / "knn" / "summary.json").read_text())["filled_nonfinite_values"] == {"s2": expected}
    assert f"warning: filled {expected} non-finite input values of 's2' with band means (see summary.json)" in lines
    # fine-tuning fills what it reads too (its copy of the normaliser counts on the init's)
    trained = {"inits": ["random"], "knn": {"enabled": False}, "linear": {"enabled": False},
               "fractions": [1.0], "seeds": [0], "finetune": TINY}  # fmt: skip
    run_evaluate(_config(holes, tmp_path / "ft", **trained), log=lambda _: None)
    filled = json.loads((tmp_path / "ft" / "summary.json").read_text())["filled_nonfinite_values"]["s2"]
    assert filled > 2 * 22  # BatchNorm statistics, then training, validation and test batches
