"""Store format v2: declared targets, dates and pairs; v1 upgrade; the data module reading declarations."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
import zarr
from torch.utils.data import DataLoader, TensorDataset
from typer.testing import CliRunner

from eossl.cli.main import app
from eossl.data.datamodule import EODataModule, StoreDataset
from eossl.data.modality import DEM, SENTINEL2_L2A
from eossl.data.splits import split_by_location
from eossl.data.store import ARRAYS_DIR, STORE_FORMAT_VERSION, SampleStore, StoreWriter
from eossl.data.synth.generator import SynthSpec, synthesize_store
from eossl.data.targets import TARGET_KINDS, Dates, Pair, Target
from eossl.errors import StoreError

N, SIZE = 12, 8
S2_AFTER = replace(SENTINEL2_L2A, name="s2_after")
EXTRA = {
    "tags": ((3,), "uint8"),
    "crop_map": ((1, SIZE, SIZE), "uint8"),
    "flat_map": ((SIZE, SIZE), "int16"),
    "height": ((1, SIZE, SIZE), "float32"),
    "change_map": ((1, SIZE, SIZE), "uint8"),
    "wrong_size": ((1, 4, 4), "uint8"),
}
CUSTOM = [
    Target("crop_type", "single-label", column="crop", class_names=("wheat", "maize", "rice")),
    Target("yield_t_ha", "regression", column="yield", strata="crop_type", description="harvest"),
    Target("tags", "multi-label", array="tags", class_names=("a", "b", "c")),
    Target("crop_mask", "segmentation", array="crop_map", ignore_index=255, strata="tags"),
    Target("flat_mask", "segmentation", array="flat_map"),
    Target("canopy_height", "pixel-regression", array="height"),
    Target("changed", "change", array="change_map", class_names=("same", "changed")),
]


def _writer(path, modalities=None) -> StoreWriter:
    """A store of 12 rows (6 fields x 2 dates) with every kind of target; returned unclosed."""
    modalities = modalities or {"s2": SENTINEL2_L2A, "s2_after": S2_AFTER, "dem": DEM}
    writer = StoreWriter(path, N, modalities, extra_arrays=EXTRA, shard_size=4)
    rng = np.random.default_rng(0)
    arrays = {
        name: rng.integers(1, 3000, (N, m.num_bands, SIZE, SIZE)).astype(m.dtype) for name, m in modalities.items()
    }
    arrays |= {
        "tags": rng.integers(0, 2, (N, 3)),
        "crop_map": np.where(rng.random((N, 1, SIZE, SIZE)) < 0.1, 255, rng.integers(0, 3, (N, 1, SIZE, SIZE))),
        "flat_map": rng.integers(0, 3, (N, SIZE, SIZE)),
        "height": rng.random((N, 1, SIZE, SIZE)) * 30,
        "change_map": rng.integers(0, 2, (N, 1, SIZE, SIZE)),
        "wrong_size": np.zeros((N, 1, 4, 4)),
    }
    table = pd.DataFrame(
        {
            "field": np.repeat(np.arange(6), 2),
            "year": np.tile([2020, 2021], 6),
            "crop": np.arange(N) % 3,
            "yield": np.linspace(1, 9, N),
        }
    )
    writer.write(arrays, table)
    return writer


def _store(path, targets=CUSTOM, dates=Dates("field", "year"), pairs=(Pair("s2_change", "s2", "s2_after", "changed"),)):
    return SampleStore(_writer(path).close({"note": "custom"}, targets=targets, dates=dates, pairs=list(pairs)))


def test_declarations_round_trip_through_json_and_the_store(tmp_path):
    for target in CUSTOM:
        assert Target.from_json(target.name, target.to_json()) == target
    assert CUSTOM[0].to_json() == {"kind": "single-label", "column": "crop", "class_names": ["wheat", "maize", "rice"]}
    assert Dates.from_json(Dates("field", "year").to_json()) == Dates("field", "year")
    pair = Pair("p", "s2", "s2_after", "changed")
    assert Pair.from_json(pair.to_json()) == pair
    assert set(TARGET_KINDS) == {t.kind for t in CUSTOM}
    store = _store(tmp_path / "s")
    assert store.format_version == STORE_FORMAT_VERSION == 2
    assert list(store.targets.values()) == CUSTOM
    assert store.dates == Dates("field", "year")
    assert store.pairs == {"s2_change": Pair("s2_change", "s2", "s2_after", "changed")}
    assert store.attrs["note"] == "custom" and store.attrs["eossl_store_version"] == 2
    assert [t.name for t in store.targets_of_kind("segmentation")] == ["crop_mask", "flat_mask"]
    assert store.target("crop_type").num_classes == 3 and store.class_names == ("wheat", "maize", "rice")
    assert store.target("crop_mask").dense and store.target("crop_mask").classification
    assert not store.target("yield_t_ha").classification and not store.target("tags").dense
    with pytest.raises(StoreError, match=r"declares no target 'label' \(it declares: crop_type \(single-label\)"):
        store.target("label")
    empty = SampleStore(_writer(tmp_path / "e").close())
    assert empty.targets == {} and empty.dates is None and empty.pairs == {}


def test_malformed_targets_are_refused_naming_the_kinds_and_sources():
    with pytest.raises(StoreError, match=r"target 'x': unknown kind 'bogus' \(known: single-label, multi-label, "):
        Target("x", "bogus", column="c")  # type: ignore[arg-type]
    with pytest.raises(StoreError, match=r"target 'x': unknown kind 'detection'.*pixel-regression, change"):
        Target.from_json("x", {"kind": "detection", "array": "boxes"})
    with pytest.raises(StoreError, match="exactly one source"):
        Target("x", "regression", column="c", array="a")
    with pytest.raises(StoreError, match="exactly one source"):
        Target.from_json("x", {"kind": "regression"})
    with pytest.raises(StoreError, match=r"'segmentation' reads its values from an array.*got column='c'"):
        Target("x", "segmentation", column="c")
    with pytest.raises(StoreError, match=r"target 'x': unknown keys \['colour'\]"):
        Target.from_json("x", {"kind": "regression", "column": "c", "colour": "red"})
    with pytest.raises(StoreError, match="has no classes"):
        Target("x", "regression", column="c", class_names=("a",))


BAD = [
    ([Target("t", "single-label", column="nope")], None, [], r"target 't' reads column 'nope'.*\(it has: sample_id, "),
    ([Target("t", "regression", column="crop"), Target("t", "regression", column="yield")], None, [], "declared twice"),
    ([Target("t", "single-label", column="yield")], None, [], r"expects integer class ids in column 'yield', got"),
    ([Target("t", "single-label", column="crop", class_names=("a", "b"))], None, [], r"in \[0, 2\).*got values 0 .. 2"),
    ([Target("t", "multi-label", array="nope")], None, [], r"reads array 'nope'.*\(it has: change_map, crop_map"),
    ([Target("t", "multi-label", array="tags", class_names=("a", "b"))], None, [], r"of shape \[N, 2\].*got \[N, 3\]"),
    ([Target("t", "multi-label", array="crop_map")], None, [], r"'crop_map' of shape \[N, C\].*got \[N, 1, 8, 8\]"),
    ([Target("t", "segmentation", array="wrong_size")], None, [], r"H x W = 8x8 .*got \[N, 1, 4, 4\]"),
    ([Target("t", "segmentation", array="tags")], None, [], r"\[N, 1, H, W\] or \[N, H, W\].*got \[N, 3\]"),
    ([Target("t", "segmentation", array="height")], None, [], "integer class ids in array 'height', got float32"),
    ([Target("t", "regression", column="yield", strata="nope")], None, [], r"strata 'nope' must be a declared target"),
    ([Target("t", "regression", column="yield", strata="u"), Target("u", "regression", column="crop")], None, [],
     r"strata 'u' must be .* of kind single-label or multi-label"),
    ([Target("s2", "regression", column="yield")], None, [], "must not be a modality name"),
    ([], Dates("place"), [], r"dates.group names column 'place', which the metadata table does not have"),
    ([], Dates("field", "when"), [], r"dates.time names column 'when'"),
    (CUSTOM, None, [Pair("p", "s2", "s2_after", "crop_mask")], r"pair 'p': target 'crop_mask' must be a target of kind "
     r"'change' \(of kind 'segmentation'\)"),
    (CUSTOM, None, [Pair("p", "s2", "s2_after", "nope")], r"must be a target of kind 'change' \(not declared\)"),
    (CUSTOM, None, [Pair("p", "s2", "s1", "changed")], r"pair 'p': after 's1' is not a modality"),
    (CUSTOM, None, [Pair("p", "s2", "dem", "changed")], r"pair 'p'.*the two dates must have equal shapes"),
]  # fmt: skip


@pytest.mark.parametrize(("targets", "dates", "pairs", "message"), BAD)
def test_bad_declarations_are_refused_and_nothing_is_published(tmp_path, targets, dates, pairs, message):
    writer = _writer(tmp_path / "s")
    with pytest.raises(StoreError, match=message) as info:
        writer.close(targets=targets, dates=dates, pairs=pairs)
    assert f"store '{tmp_path / 's'}'" in str(info.value)
    assert not list(tmp_path.iterdir())  # the temporary store is gone, nothing in place


def test_writer_keys_cannot_be_set_through_attrs(tmp_path):
    with pytest.raises(StoreError, match=r"attrs \['targets'\] are set by the writer"):
        _writer(tmp_path / "s").close({"targets": {"label": "majority class"}})
    assert not list(tmp_path.iterdir())


def _rewrite_attrs(path, edit) -> None:
    group = zarr.open_group(str(path / ARRAYS_DIR), mode="r+")
    attrs = dict(group.attrs)
    edit(attrs)
    group.attrs.clear()
    group.attrs.update(attrs)


def _as_v1(attrs: dict) -> None:
    attrs["eossl_store_version"] = 1
    for key in ("targets", "dates", "pairs"):
        del attrs[key]
    attrs["targets"] = {  # what the v1 generator wrote: descriptions only
        "label": "majority land-cover class (metadata.csv)",
        "multilabel": "classes covering >= 5% of the patch (array)",
        "mask": "land-cover map (array lulc)",
        "tree_cover": "tree + mangrove fraction (metadata.csv)",
    }


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory):
    return synthesize_store(tmp_path_factory.mktemp("synth") / "s", SynthSpec(num_locations=6, seasons=2, patch_size=8))


def test_a_v1_synthetic_store_opens_with_the_declarations_of_a_v2_one(tiny_synth, tmp_path):
    v2 = SampleStore(tiny_synth)
    assert list(v2.targets) == ["label", "multilabel", "mask", "tree_cover"]
    assert v2.target("mask") == Target(
        "mask", "segmentation", array="lulc", class_names=v2.class_names, strata="multilabel",
        description="land-cover map (array lulc)",
    )  # fmt: skip
    assert v2.target("tree_cover").strata == "label" and v2.dates == Dates("location_id", "season")
    shutil.copytree(tiny_synth, tmp_path / "v1")
    _rewrite_attrs(tmp_path / "v1", _as_v1)
    v1 = SampleStore(tmp_path / "v1")
    assert v1.format_version == 1 and "format v1" in v1.summary()
    assert v1.targets == v2.targets and v1.dates == v2.dates and v1.pairs == {}
    rows = np.arange(len(v1))
    names = list(v2.targets)
    for key, value in StoreDataset(v1, rows, ["s2"], names).__getitems__(list(rows)).items():
        torch.testing.assert_close(value, StoreDataset(v2, rows, ["s2"], names).__getitems__(list(rows))[key])


def test_a_v1_store_declares_only_what_it_holds(tmp_path):
    writer = StoreWriter(tmp_path / "s", 4, {"dem": DEM})
    writer.write({"dem": np.zeros((4, 1, 4, 4), np.float32)}, pd.DataFrame({"tree_cover": [0.1, 0.2, 0.3, 0.4]}))
    path = writer.close()
    _rewrite_attrs(path, _as_v1)
    store = SampleStore(path)
    assert list(store.targets) == ["tree_cover"] and store.target("tree_cover").strata is None
    assert store.dates is None


def test_a_newer_store_is_refused_naming_its_version(tmp_path):
    path = _writer(tmp_path / "s").close()
    _rewrite_attrs(path, lambda attrs: attrs.update(eossl_store_version=3))
    with pytest.raises(StoreError, match=rf"store '{path}' has format v3; this eossl reads up to v2: upgrade eossl"):
        SampleStore(path)


def test_custom_targets_come_out_under_their_names_typed_by_kind(tmp_path):
    store = _store(tmp_path / "s")
    names = [t.name for t in CUSTOM]
    batch = StoreDataset(store, np.arange(N), ["s2"], names).__getitems__([3, 0, 7])
    assert set(batch) == {"s2", "index", *names}
    assert batch["crop_type"].dtype == torch.int64 and batch["crop_type"].tolist() == [0, 0, 1]
    assert batch["yield_t_ha"].dtype == torch.float32 and batch["yield_t_ha"][1] == 1.0
    assert batch["tags"].dtype == torch.float32 and batch["tags"].shape == (3, 3)
    for name in ("crop_mask", "flat_mask", "changed"):
        assert batch[name].dtype == torch.int64 and batch[name].shape == (3, SIZE, SIZE)
    np.testing.assert_array_equal(batch["crop_mask"].numpy(), store.read("crop_map", [3, 0, 7])[:, 0])
    assert (batch["crop_mask"] == 255).any()  # ignore_index values pass through
    assert batch["canopy_height"].dtype == torch.float32 and batch["canopy_height"].shape == (3, SIZE, SIZE)
    with pytest.raises(StoreError, match=r"declares no target 'label' \(it declares: crop_type"):
        StoreDataset(store, np.arange(N), ["s2"], ["label"])


def test_data_module_uses_the_declared_dates_targets_and_strata(tmp_path):
    store = _store(tmp_path / "s")
    dm = EODataModule(store, ["s2"], targets=["crop_type", "crop_mask"], val=0.2, test=0.2, in_memory=True)
    field = store.table["field"].to_numpy()
    assert not set(field[dm.splits["train"]]) & set(field[dm.splits["test"]])  # whole places per split
    assert set(dm.arrays) == {"s2", "crop_map"}
    sub = EODataModule(store, ["s2"], fraction=0.5, val=0.0, test=0.0)
    assert len(sub.splits["train"]) == 6 and len(np.unique(store.table["crop"][sub.splits["train"]])) == 3
    by_tags = EODataModule(store, ["s2"], fraction=0.5, val=0.0, test=0.0, stratify="crop_mask")  # strata: tags
    assert len(by_tags.splits["train"]) == 6
    with pytest.raises(StoreError, match=r"target 'canopy_height' \(pixel-regression\) cannot stratify"):
        EODataModule(store, ["s2"], fraction=0.5, stratify="canopy_height")
    plain = _store(tmp_path / "p", targets=[Target("yield_t_ha", "regression", column="yield")], pairs=())
    with pytest.raises(StoreError, match=r"stratified by a single-label target, and the store declares none"):
        EODataModule(plain, ["s2"], fraction=0.5)
    partners = EODataModule(store, ["s2"], dates=2, val=0.0, test=0.0).dataset("train").__getitems__([0, 1])
    np.testing.assert_array_equal(field[partners["index@1"]], field[partners["index"]])
    undated = _store(tmp_path / "u", dates=None, pairs=())
    with pytest.raises(StoreError, match=r"temporal pairing \(dates=2\) needs the store to declare its dates"):
        EODataModule(undated, ["s2"], dates=2).dataset("train")


def test_split_by_location_groups_by_the_given_column():
    table = pd.DataFrame({"place": np.repeat(np.arange(20), 3), "location_id": np.arange(60)})
    splits = split_by_location(table, seed=2, group="place")
    assert sum(map(len, splits.values())) == 60
    assert not set(table.place[splits["train"]]) & set(table.place[splits["val"]])
    assert len(split_by_location(table, seed=2)["test"]) == 12  # default: location_id, one row per place
    with pytest.raises(StoreError, match="no column 'plot'"):
        split_by_location(table, group="plot")


def test_synthetic_splits_are_unchanged(small_store):
    table = SampleStore(small_store).table
    splits = EODataModule(small_store, ["s2"]).splits
    for name, rows in split_by_location(table, 0.1, 0.2, 0).items():
        np.testing.assert_array_equal(splits[name], rows)


@pytest.mark.parametrize("seed", [0, 7])
def test_shuffled_loader_order_equals_a_shuffled_tensor_dataset(small_store, seed):
    dm = EODataModule(small_store, ["s2"], targets=["label", "mask"], in_memory=True)
    rows = dm.splits["train"]
    reference = DataLoader(
        TensorDataset(torch.arange(len(rows))),
        batch_size=32,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    order = torch.cat([b[0] for b in reference]).numpy()
    batches = list(dm.loader("train", 32, shuffle=True, seed=seed))
    assert len(batches) == len(reference) and batches[0]["mask"].shape[1:] == (32, 32)
    np.testing.assert_array_equal(torch.cat([b["index"] for b in batches]).numpy(), rows[order])
    # a subset of the split, in order, and the same subset read in one batch
    positions = np.array([5, 1, 9, 2])
    batches = list(dm.loader("val", 3, positions=positions))
    assert [len(b["index"]) for b in batches] == [3, 1]
    whole = dm.read_split("val", ["s2", "label"], positions=positions)
    np.testing.assert_array_equal(whole["index"].numpy(), dm.splits["val"][positions])
    torch.testing.assert_close(torch.cat([b["label"] for b in batches]), whole["label"])
    assert len(dm.dataset("test", positions)) == 4 and len(dm.dataset("test")) == len(dm.splits["test"])
    with pytest.raises(StoreError, match="no modality or target 'nope'"):
        dm.read_split("val", ["nope"])


def test_data_show_lists_modalities_targets_dates_pairs_and_splits(tmp_path):
    store = _store(tmp_path / "s")
    result = CliRunner().invoke(app, ["data", "show", str(store.path), "--count", "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "format v2" in out and "s2_after" in out and "optical" in out
    assert "crop_type  single-label     column crop, 3 classes" in out
    assert "yield_t_ha regression       column yield, strata crop_type" in out
    assert "crop_mask  segmentation     array crop_map [1, 8, 8], 0 classes, strata tags, ignore 255" in out
    assert "dates: group column field, 6 places, scenes per place min 2 max 2, time column year (2 values)" in out
    assert "s2_change: s2 -> s2_after, change target changed" in out
    assert "splits (by place: val 0.1, test 0.2, seed 0): train 8, val 2, test 2" in out
    assert "majority-class counts of crop_type: wheat=4, maize=4, rice=4" in out
