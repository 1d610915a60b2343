"""``eossl data check STORE``: find every damaged chunk of a store, and what its metadata gets wrong.

:func:`check_store` decodes every inner chunk of every array (straight from the shard files for local
stores, see :meth:`eossl.data.shards.ShardReader.scan`; through zarr otherwise) and reports, per
damaged chunk (or shard, where its file or index is unreadable), the array, the sample rows, the
shard file and the reason. It also checks the metadata: the table's row count against
``num_samples``, every declared array (modalities, targets' arrays) present with that many rows and a
modality's band count, and finite per-band statistics of every continuous modality.

Arrays written with chunk checksums (crc32c; :class:`~eossl.data.store_writer.StoreWriter` since
they were added) are verified byte for byte, and a missing shard file is damage. Arrays written
before can only be checked for decodability: a damaged chunk may still decode into wrong values, and
a missing shard file may be one that held only fill values (zarr does not write those), so it is a
note, not damage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import zarr

from eossl.data.modality import Modality
from eossl.data.shards import (
    MISSING,
    ChunkDamageError,
    ScanResult,
    ShardReader,
    damage_error,
    has_chunk_checksums,
    rows_text,
    shard_label,
)
from eossl.data.store import decode_reason, shard_exists
from eossl.data.store_location import ARRAYS_DIR, remote_arrays, store_url
from eossl.data.store_writer import METADATA_FILE
from eossl.errors import StoreError


@dataclass(frozen=True)
class Damage:
    """Rows of an array that do not read back as written."""

    array: str
    rows: tuple[int, int]  # first and last sample, inclusive
    shard_file: str  # relative to the store folder
    reason: str

    def line(self) -> str:
        """One line for the report."""
        return f"damaged: array '{self.array}', {rows_text(*self.rows)}, shard file '{self.shard_file}': {self.reason}"


@dataclass
class StoreCheck:
    """What :func:`check_store` found; :attr:`ok` when nothing is damaged and the metadata fits."""

    store: str
    arrays: int = 0
    chunks: int = 0
    damaged: list[Damage] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # metadata that does not fit
    notes: list[str] = field(default_factory=list)  # what could not be checked fully; not damage

    @property
    def ok(self) -> bool:
        """Whether no chunk is damaged and the metadata has no problem."""
        return not self.damaged and not self.problems

    def summary(self) -> str:
        """``checked 12 arrays, 3,456 chunks: 2 damaged`` (and metadata problems, if any)."""
        text = f"checked {_count(self.arrays, 'array')}, {_count(self.chunks, 'chunk')}: {len(self.damaged)} damaged"
        if self.problems:
            text += f", {len(self.problems)} metadata problem{'s' if len(self.problems) > 1 else ''}"
        return text

    def lines(self) -> list[str]:
        """The report: one line per damaged chunk, problem and note, then the summary (and what to do)."""
        out = [d.line() for d in self.damaged] + [f"problem: {p}" for p in self.problems]
        out += [f"note: {n}" for n in self.notes] + [self.summary()]
        if self.damaged:
            out.append(
                f"store '{self.store}' is damaged: re-import or re-download it (damaged files cannot be repaired)"
            )
        return out


def check_store(path: str | Path) -> StoreCheck:
    """Check the store at ``path`` (a folder or URL); :class:`StoreError` only when there is none at all."""
    url = store_url(path)
    label = str(path) if url is None else url
    report = StoreCheck(label)
    if url is None and not Path(path).exists():
        raise StoreError(f"store '{label}' does not exist")
    try:
        group = zarr.open_group(str(Path(path) / ARRAYS_DIR) if url is None else remote_arrays(url), mode="r")
        attrs = dict(group.attrs)
    except Exception as exc:  # zarr raises several types for a missing or damaged zarr.json
        report.problems.append(f"cannot open {ARRAYS_DIR} as a zarr group (missing or damaged metadata): {exc}")
        return report
    if "eossl_store_version" not in attrs:
        report.problems.append(f"{ARRAYS_DIR} holds no 'eossl_store_version': not an eossl store")
        return report
    num_samples = attrs.get("num_samples")
    _check_table(report, path, url, num_samples)
    modalities = _check_declared(report, group, attrs, num_samples)
    _check_stats(report, attrs.get("stats") or {}, modalities)
    unchecked = []
    for name, arr in sorted(group.arrays(), key=lambda item: item[0]):
        report.arrays += 1
        reader = ShardReader.open(arr, store=label) if url is None else None
        result = reader.scan() if reader is not None else _scan_with_zarr(label, name, arr)
        report.chunks += result.chunks
        report.damaged += [Damage(e.array, e.rows, e.shard_file, e.reason) for e in result.damaged]
        for shard_file in result.absent:
            report.notes.append(
                f"array '{name}': shard file '{shard_file}' is absent; it reads as fill values (written before "
                "chunk checksums, a shard holding only fill values has no file, so it may be intact)"
            )
        if not has_chunk_checksums(arr):
            unchecked.append(name)
    if unchecked:
        report.notes.append(
            f"array(s) {', '.join(unchecked)} have no chunk checksums (written before eossl added them): their "
            "chunks can only be checked for decodability, a damaged one may decode into wrong values; "
            "re-import the store to add checksums"
        )
    return report


def _check_table(report: StoreCheck, path: str | Path, url: str | None, num_samples: Any) -> None:
    try:
        if url is None:
            table = pd.read_csv(Path(path) / METADATA_FILE)
        else:
            import fsspec

            with fsspec.open(f"{url}/{METADATA_FILE}", "rb") as f:
                table = pd.read_csv(f)
    except (OSError, ValueError) as exc:  # missing, unreadable or not CSV
        report.problems.append(f"cannot read {METADATA_FILE}: {exc}")
        return
    if len(table) != num_samples:
        report.problems.append(f"{METADATA_FILE} has {len(table)} rows, the store declares {num_samples} samples")


def _check_declared(report: StoreCheck, group: zarr.Group, attrs: dict, num_samples: Any) -> dict[str, Modality]:
    """Problems of the declared arrays (present, ``num_samples`` rows, band counts); the modalities."""
    modalities = {}
    for name, m in (attrs.get("modalities") or {}).items():
        try:
            modalities[name] = Modality(**{k: tuple(v) if isinstance(v, list) else v for k, v in m.items()})
        except (TypeError, ValueError) as exc:
            report.problems.append(f"modality '{name}' has a bad declaration: {exc}")
    declared = {name: "modality" for name in modalities}
    for target, spec in (attrs.get("targets") or {}).items():
        if isinstance(spec, dict) and spec.get("array"):
            declared.setdefault(spec["array"], f"target '{target}'")
    present = dict(group.arrays())
    for name, what in declared.items():
        if name not in present:
            report.problems.append(f"array '{name}' ({what}) is declared but missing")
            continue
        shape = tuple(present[name].shape)
        if not shape or shape[0] != num_samples:
            report.problems.append(
                f"array '{name}' has {shape[0] if shape else 0} rows, the store declares {num_samples}"
            )
        if name in modalities and (len(shape) < 2 or shape[1] != modalities[name].num_bands):
            report.problems.append(
                f"array '{name}' has shape {shape}, its modality declares {modalities[name].num_bands} bands"
            )
    return modalities


def _check_stats(report: StoreCheck, stats: dict, modalities: dict[str, Modality]) -> None:
    for name, modality in modalities.items():
        if not modality.continuous:
            continue
        st = stats.get(name)
        if not isinstance(st, dict):
            report.problems.append(f"modality '{name}' has no per-band statistics (normalisation needs them)")
            continue
        for key in ("mean", "std", "p2", "p98"):
            values = st.get(key)
            if key in ("p2", "p98") and values is None:
                continue
            if not isinstance(values, list) or len(values) != modality.num_bands:
                report.problems.append(f"statistics '{key}' of modality '{name}' do not hold one value per band")
            else:
                bad = [b for b, v in zip(modality.bands, values, strict=True) if not _finite(v)]
                if bad:
                    report.problems.append(
                        f"statistics '{key}' of modality '{name}' are not finite (bands {', '.join(bad)})"
                    )
        constant = [b for b, flag in zip(modality.bands, st.get("constant") or [], strict=False) if flag]
        if constant:
            report.notes.append(f"modality '{name}': constant band(s) {', '.join(constant)} carry no information")


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _scan_with_zarr(store: str, name: str, arr: zarr.Array) -> ScanResult:
    """:meth:`ShardReader.scan` through zarr (remote stores, other layouts): every shard read, a failing
    one chunk by chunk."""
    n = int(arr.shape[0]) if arr.shape else 0
    chunk_rows = int(arr.chunks[0]) if arr.shape else 1
    block = int(arr.shards[0]) if arr.shards else chunk_rows
    result = ScanResult(chunks=-(-n // chunk_rows))
    strict = has_chunk_checksums(arr)
    for shard in range(-(-n // block)):
        first, last = shard * block, min((shard + 1) * block, n) - 1
        if arr.shards and not shard_exists(arr, shard):
            if strict:
                result.damaged.append(
                    damage_error(
                        store, name, (first, last), shard_label(arr, shard), "shard file missing or empty", MISSING
                    )
                )
            else:
                result.absent.append(shard_label(arr, shard))
            continue
        try:
            arr[first : last + 1]
        except Exception:  # zarr and numcodecs raise several types for damaged bytes
            result.damaged += _damaged_chunks(store, name, arr, shard, first, last)
    return result


def _damaged_chunks(
    store: str, name: str, arr: zarr.Array, shard: int, first: int, last: int
) -> list[ChunkDamageError]:
    found, chunk_rows = [], int(arr.chunks[0])
    for start in range(first, last + 1, chunk_rows):
        stop = min(start + chunk_rows, last + 1) - 1
        try:
            arr[start : stop + 1]
        except Exception as exc:
            found.append(damage_error(store, name, (start, stop), shard_label(arr, shard), decode_reason(exc)))
    if not found:  # the shard as a whole fails (its index), its chunks one by one do not
        found.append(damage_error(store, name, (first, last), shard_label(arr, shard), "the shard does not decode"))
    return found


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
