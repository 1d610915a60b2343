"""A damaged store is detected and named (store, array, samples, shard file), never decoded into garbage;
``eossl data check`` lists the damage; interrupted writers' temporary folders are removed and reported."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner
from zarr.codecs import BloscCodec, Crc32cCodec

from eossl.cli.main import app
from eossl.data.check import check_store
from eossl.data.datamodule import EODataModule, StoreDataset
from eossl.data.modality import SENTINEL2_L2A
from eossl.data.shards import ChunkDamageError
from eossl.data.store import ARRAYS_DIR, SampleStore, StoreWriter
from eossl.errors import StoreError

N, SHARD, CHUNK, SIZE = 64, 16, 4, 32  # 4 shards of s2, each ~390 kB (random values compress poorly)
S2_SHARDS = [f"{ARRAYS_DIR}/s2/c/{shard}/0/0/0" for shard in range(N // SHARD)]


def _write(path: Path, n: int = N, size: int = SIZE, shard: int = SHARD, chunk: int = CHUNK) -> Path:
    rng = np.random.default_rng(0)
    writer = StoreWriter(path, n, {"s2": SENTINEL2_L2A}, {"tags": ((3,), "uint8")}, shard_size=shard, chunk_size=chunk)
    s2 = rng.integers(1, 10000, (n, SENTINEL2_L2A.num_bands, size, size)).astype(np.uint16)
    writer.write({"s2": s2, "tags": rng.integers(0, 2, (n, 3))}, pd.DataFrame({"location_id": np.arange(n)}))
    return writer.close()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("pristine") / "store")


@pytest.fixture
def store(pristine, tmp_path) -> Path:
    """A fresh copy of the pristine store, to damage."""
    return Path(shutil.copytree(pristine, tmp_path / "store"))


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _random_middle(path: Path, count: int = 20_000) -> None:
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2 - count // 2)
        f.write(np.random.default_rng(1).bytes(count))


def _overwrite_index(path: Path) -> None:
    index = 16 * (SHARD // CHUNK) + 4
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size - index + 8)
        f.write(b"\x07" * 20)


DAMAGES = {"truncated": _truncate, "random-middle": _random_middle, "index": _overwrite_index, "missing": os.remove}


def _damage_pattern(store: Path, shard: int) -> str:
    rows = r"samples? (\d+)(?:\.\.(\d+))?"
    return rf"store '{re.escape(str(store))}': array 's2', {rows} \(shard file '{re.escape(S2_SHARDS[shard])}'\)"


def _rows_within(message: str, shard: int) -> bool:
    found = re.search(r"samples? (\d+)(?:\.\.(\d+))?", message)
    first, last = int(found[1]), int(found[2] or found[1])
    return shard * SHARD <= first <= last < (shard + 1) * SHARD


@pytest.mark.parametrize("kind", list(DAMAGES))
def test_a_damaged_shard_is_named_by_every_read_path(store, kind):
    DAMAGES[kind](store / S2_SHARDS[1])
    s = SampleStore(store)
    shard_rows = np.arange(SHARD, 2 * SHARD)
    for fast in (True, False):
        s = SampleStore(store)
        s.fast_reads = fast
        with pytest.raises(StoreError, match=_damage_pattern(store, 1)) as caught:
            s.read("s2", shard_rows[::-1])
        assert isinstance(caught.value, ChunkDamageError) and _rows_within(str(caught.value), 1)
        assert f"run 'eossl data check {store}'" in str(caught.value) and "\n" not in str(caught.value)
        with pytest.raises(StoreError, match=_damage_pattern(store, 1)):
            s.read("s2")  # whole array
        np.testing.assert_array_equal(s.read("s2", np.arange(SHARD)), SampleStore(store).read("s2", np.arange(SHARD)))
    with pytest.raises(StoreError, match=_damage_pattern(store, 1)):
        EODataModule(store, ["s2"])  # loads the arrays into memory
    dataset = StoreDataset(SampleStore(store), np.arange(N), ["s2"], [])
    assert dataset.__getitems__(list(range(4)))["s2"].shape[0] == 4  # intact shards still read
    with pytest.raises(StoreError, match=_damage_pattern(store, 1)):
        dataset.__getitems__(list(range(8, 24)))
    assert SampleStore(store).read("tags").shape == (N, 3)  # other arrays are unaffected


def test_random_bytes_in_the_middle_of_a_shard_are_never_decoded_silently(store, pristine):
    """The case a user met: 20,000 random bytes in an s2 shard decoded into garbage before checksums."""
    _random_middle(store / S2_SHARDS[2])
    original = SampleStore(pristine).read("s2")
    s = SampleStore(store)
    damaged = []
    for row in range(N):
        try:
            np.testing.assert_array_equal(s.read("s2", [row])[0], original[row])
        except StoreError:
            damaged.append(row)
    assert damaged and all(2 * SHARD <= row < 3 * SHARD for row in damaged)


def test_data_check_finds_every_damage_and_exits_1(store, pristine):
    runner = CliRunner()
    clean = runner.invoke(app, ["data", "check", str(pristine)])
    assert clean.exit_code == 0, clean.output
    assert "checked 2 arrays, 32 chunks: 0 damaged" in clean.output and "damaged:" not in clean.output
    for shard, kind in enumerate(DAMAGES):
        DAMAGES[kind](store / S2_SHARDS[shard])
    result = runner.invoke(app, ["data", "check", str(store)])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("damaged: array 's2'")]
    for shard in range(len(DAMAGES)):
        assert any(f"shard file '{S2_SHARDS[shard]}'" in line for line in lines), (shard, result.output)
    assert any("shard file missing" in line and "samples 48..63" in line for line in lines)
    assert any("index" in line or "cut short" in line for line in lines)
    assert re.search(rf"checked 2 arrays, 32 chunks: {len(lines)} damaged", result.output)
    report = check_store(store)
    assert not report.ok and {d.shard_file for d in report.damaged} == set(S2_SHARDS)


def test_data_check_reports_metadata_problems(store):
    table = pd.read_csv(store / "metadata.csv")
    table.iloc[:-2].to_csv(store / "metadata.csv", index=False)
    report = check_store(store)
    assert report.problems == [f"metadata.csv has {N - 2} rows, the store declares {N} samples"]
    assert not report.damaged and not report.ok
    assert CliRunner().invoke(app, ["data", "check", str(store)]).exit_code == 1
    missing = CliRunner().invoke(app, ["data", "check", str(store.parent / "nowhere")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_a_store_written_before_checksums_still_reads_and_is_decode_checked(tmp_path):
    """Old layout: inner codecs bytes + blosc, no crc32c, fill-value chunks left out."""
    path = _write(tmp_path / "old", n=20, size=4, shard=8, chunk=2)
    values = SampleStore(path).read("s2")
    values[8:16] = 0  # a whole shard of fill values: no file in the old layout
    group = zarr.open_group(str(path / ARRAYS_DIR), mode="r+")
    del group["s2"]
    old = group.create_array(
        "s2", shape=values.shape, dtype="uint16", chunks=(2, *values.shape[1:]), shards=(8, *values.shape[1:]),
        compressors=BloscCodec(cname="lz4hc", clevel=5, shuffle="shuffle"),
    )  # fmt: skip
    old[:] = values
    zarr.consolidate_metadata(str(path / ARRAYS_DIR))
    assert not (path / ARRAYS_DIR / "s2/c/1/0/0/0").exists()
    s = SampleStore(path)
    assert not isinstance(s.array("s2").metadata.codecs[0].codecs[-1], Crc32cCodec)
    np.testing.assert_array_equal(s.read("s2", np.arange(20)[::-1]), values[::-1])
    s.fast_reads = False
    np.testing.assert_array_equal(s.read("s2"), values)
    report = check_store(path)
    assert report.ok and report.chunks == 20
    assert any("can only be checked for decodability" in n and "s2" in n for n in report.notes)
    assert any("absent" in n and "s2/c/1/0/0/0" in n for n in report.notes)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray], list[str]]:
    path = _write(tmp_path_factory.mktemp("tiny") / "store", n=24, size=6, shard=8, chunk=2)
    store = SampleStore(path)
    files = sorted(str(p.relative_to(path)) for p in (path / ARRAYS_DIR).rglob("c/*") if p.is_file())
    files += sorted(str(p.relative_to(path)) for p in (path / ARRAYS_DIR).rglob("c/*/*/*/*") if p.is_file())
    return path, {name: store.read(name) for name in ("s2", "tags")}, sorted(set(files))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_bytes_give_the_original_values_or_a_store_error(tiny, data):
    path, original, files = tiny
    shard = data.draw(st.sampled_from(files), label="shard file")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(shutil.copytree(path, Path(tmp) / "store"))
        target = copy / shard
        size = target.stat().st_size
        start = data.draw(st.integers(0, size - 1), label="start")
        length = data.draw(st.integers(1, max(1, min(size - start, 4096))), label="length")
        how = data.draw(st.sampled_from(["random", "zeros", "flip", "truncate"]), label="how")
        if how == "truncate":
            os.truncate(target, start)
        else:
            with open(target, "r+b") as f:
                f.seek(start)
                old = f.read(length)
                new = {"random": data.draw(st.binary(min_size=length, max_size=length)), "zeros": bytes(length),
                       "flip": bytes(b ^ 0xFF for b in old)}[how]  # fmt: skip
                f.seek(start)
                f.write(new)
        for fast in (True, False):
            s = SampleStore(copy)
            s.fast_reads = fast
            for name, values in original.items():
                rows = data.draw(st.lists(st.integers(0, len(values) - 1), min_size=1, max_size=24), label="rows")
                for selection in (np.asarray(rows), None):
                    try:
                        got = s.read(name, selection)
                    except StoreError as exc:
                        assert f"store '{copy}': array '{name}'" in str(exc)
                        continue
                    expected = values if selection is None else values[selection]
                    np.testing.assert_array_equal(got, expected)


def test_the_store_exists_message_names_the_cli_option_and_the_python_argument(pristine):
    with pytest.raises(StoreError, match=r"already exists \(use --overwrite, or overwrite=True in Python, to replace"):
        StoreWriter(pristine, 4, {"s2": SENTINEL2_L2A})


def test_a_killed_writers_temporary_folder_is_removed_and_reported(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = tmp_path / f".store.tmp-{int(dead.stdout)}-0123abcd"
    (left / ARRAYS_DIR).mkdir(parents=True)
    alive = tmp_path / f".store.tmp-{os.getpid()}-4567cdef"  # a live writer's folder stays
    alive.mkdir()
    with pytest.warns(UserWarning, match=r"store '.*store': removed 1 temporary folder.*\.store\.tmp-\d+-0123abcd"):
        result = CliRunner().invoke(
            app, ["data", "synth", str(tmp_path / "store"), "--locations", "2", "--seasons", "1"]
        )
    assert result.exit_code == 0, result.output
    assert not left.exists() and alive.exists() and (tmp_path / "store").exists()
