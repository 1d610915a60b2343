"""Ways to damage a dataset's text files (labels / metadata CSVs, patch JSONs, split and scene lists), as
hypothesis strategies of :class:`TextDamage`.

Whole-file damage: random text, random bytes, truncated at a random offset, emptied, deleted. Damage
that keeps the format, so the importer gets past parsing: a CSV cell set to a nasty value (NaN, inf,
huge numbers, bad dates, unicode, separators, quotes), a column dropped, renamed or added with a
meaningful name, a row duplicated; a JSON key deleted or set to a random JSON value, or the whole
document replaced by random JSON; a list line replaced, duplicated or added.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from hypothesis import strategies as st

NASTY_TEXT = (
    "",
    " ",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e308",
    "1e400",
    "-1",
    "0",
    "1",
    "1.5",
    "99999999999999999999999",
    "2020-13-45",
    "2020-02-30",
    "0000-00-00",
    "9999-12-31T99:99",
    "None",
    "null",
    "[]",
    "[1,2",
    "{}",
    "['a'",
    "true",
    "train",
    "val",
    "test",
    "validation",
    "TRAIN",
    "a;b",
    "a|b",
    ";|;",
    "'",
    '"',
    "\n",
    ",",
    "ü∂ƒ©",
    "\u202e",
    "x" * 300,
)
MEANINGFUL_COLUMNS = (
    "fn",
    "id",
    "file",
    "lat",
    "lon",
    "time",
    "date",
    "split",
    "location_id",
    "sample_key",
    "sample_id",
    "label",
    "labels",
    "mask",
    "source_path",
    "patch_id",
    "s1_name",
    "country",
    "contains_seasonal_snow",
)
JSON_KEYS = (
    "labels",
    "coordinates",
    "projection",
    "tile_source",
    "acquisition_date",
    "acquisition_time",
    "corresponding_s2_patch",
    "scene_source",
)


def nasty_values() -> st.SearchStrategy[Any]:
    """Cell values: nasty strings, random text, integers and floats of any size (NaN, inf)."""
    return st.one_of(
        st.sampled_from(NASTY_TEXT),
        st.text(max_size=12),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
    )


def json_values() -> st.SearchStrategy[Any]:
    """Random JSON documents (nested lists and objects of any scalars)."""
    numbers = st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    scalars = st.none() | st.booleans() | numbers | st.text(max_size=8)
    return st.recursive(
        scalars | st.sampled_from(NASTY_TEXT),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
        max_leaves=12,
    )


@dataclass(frozen=True)
class TextDamage:
    """One damage of one text file; ``repr`` reproduces it."""

    kind: str
    payload: Any = None
    column: str | None = None
    row: int = 0
    where: float = 0.0

    def apply(self, path: Path) -> None:
        """Damage ``path`` in place."""
        if self.kind == "delete":
            path.unlink()
        elif self.kind == "empty":
            path.write_bytes(b"")
        elif self.kind == "bytes":
            path.write_bytes(self.payload)
        elif self.kind == "text":
            path.write_text(self.payload, encoding="utf-8")
        elif self.kind == "truncate":
            data = path.read_bytes()
            path.write_bytes(data[: int(self.where * len(data))])
        elif self.kind.startswith("csv-"):
            self._csv(path)
        elif self.kind.startswith("json-"):
            self._json(path)
        elif self.kind.startswith("lines-"):
            self._lines(path)
        else:  # pragma: no cover - the strategies make only the kinds above
            raise ValueError(self.kind)

    def _csv(self, path: Path) -> None:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        cell = self.payload if isinstance(self.payload, str) else repr(self.payload)
        if self.kind == "csv-cell":
            table.loc[self.row % len(table), self.column] = cell
        elif self.kind == "csv-drop":
            table = table.drop(columns=[self.column])
        elif self.kind == "csv-rename":
            table = table.rename(columns={self.column: str(self.payload)})
        elif self.kind == "csv-add":
            table[self.column] = [cell] * len(table)
        elif self.kind == "csv-duplicate":
            table = pd.concat([table, table.iloc[[self.row % len(table)]]], ignore_index=True)
        buffer = io.StringIO()
        table.astype(object).to_csv(buffer, index=False)
        path.write_text(buffer.getvalue(), encoding="utf-8")

    def _json(self, path: Path) -> None:
        if self.kind == "json-document":
            document = self.payload
        else:
            document = json.loads(path.read_text(encoding="utf-8"))
            if self.kind == "json-delete":
                document.pop(self.column, None)
            elif self.kind == "json-set":
                document[self.column] = self.payload
            elif self.kind == "json-coordinate":
                document.setdefault("coordinates", {})[self.column] = self.payload
        path.write_text(json.dumps(document, allow_nan=True), encoding="utf-8")

    def _lines(self, path: Path) -> None:
        lines = path.read_text(encoding="utf-8").splitlines() or [""]
        row = self.row % len(lines)
        if self.kind == "lines-replace":
            lines[row] = str(self.payload)
        elif self.kind == "lines-duplicate":
            lines.append(lines[row])
        elif self.kind == "lines-add":
            lines.insert(row, str(self.payload))
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _whole_file() -> st.SearchStrategy[TextDamage]:
    return st.one_of(
        st.builds(TextDamage, kind=st.just("text"), payload=st.text(max_size=300)),
        st.builds(TextDamage, kind=st.just("bytes"), payload=st.binary(max_size=300)),
        st.builds(TextDamage, kind=st.just("truncate"), where=st.floats(0, 1)),
        st.sampled_from((TextDamage("empty"), TextDamage("delete"))),
    )


def csv_damages(columns: list[str]) -> st.SearchStrategy[TextDamage]:
    """Damage of a CSV whose header is ``columns``."""
    some = st.sampled_from(columns)
    rows = st.integers(0, 50)
    return st.one_of(
        _whole_file(),
        st.builds(TextDamage, kind=st.just("csv-cell"), payload=nasty_values(), column=some, row=rows),
        st.builds(TextDamage, kind=st.just("csv-cell"), payload=nasty_values(), column=some, row=rows),
        st.builds(TextDamage, kind=st.just("csv-drop"), column=some),
        st.builds(TextDamage, kind=st.just("csv-rename"), column=some, payload=st.sampled_from(NASTY_TEXT)),
        st.builds(
            TextDamage,
            kind=st.just("csv-add"),
            column=st.sampled_from(MEANINGFUL_COLUMNS),
            payload=nasty_values(),
        ),
        st.builds(TextDamage, kind=st.just("csv-duplicate"), row=rows),
    )


def json_damages() -> st.SearchStrategy[TextDamage]:
    """Damage of a BigEarthNet patch JSON."""
    keys = st.sampled_from(JSON_KEYS)
    corners = st.sampled_from(("ulx", "uly", "lrx", "lry", "lly"))
    return st.one_of(
        _whole_file(),
        st.builds(TextDamage, kind=st.just("json-document"), payload=json_values()),
        st.builds(TextDamage, kind=st.just("json-delete"), column=keys),
        st.builds(TextDamage, kind=st.just("json-set"), column=keys, payload=json_values()),
        st.builds(TextDamage, kind=st.just("json-coordinate"), column=corners, payload=json_values()),
    )


def lines_damages(lines: list[str]) -> st.SearchStrategy[TextDamage]:
    """Damage of a list file (one name per line); a line may be replaced by another file's name."""
    values = nasty_values() | st.sampled_from(lines or [""])
    rows = st.integers(0, 50)
    return st.one_of(
        _whole_file(),
        st.builds(TextDamage, kind=st.just("lines-replace"), payload=values, row=rows),
        st.builds(TextDamage, kind=st.just("lines-duplicate"), row=rows),
        st.builds(TextDamage, kind=st.just("lines-add"), payload=values, row=rows),
    )


TEXT_FILES = {
    "geotiff-folder": (".csv",),
    "bigearthnet-v1": (".json", ".csv"),
    "bigearthnet-v2": (".csv",),
    "eurosat": (".txt",),
    "sen12ms": (".txt",),
}
"""The datasets with text files, and which."""


def table_files(name: str, template: Path) -> list[Path]:
    """The text files of a template dataset, relative to it."""
    suffixes = TEXT_FILES[name]
    found = (p for p in template.rglob("*") if p.is_file() and p.suffix in suffixes)
    return sorted(p.relative_to(template) for p in found)


def table_damages(path: Path) -> st.SearchStrategy[TextDamage]:
    """The damage strategy that fits the (intact) file ``path``: CSV with a header, JSON, or a list."""
    if path.suffix == ".json":
        return json_damages()
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".csv" and "," in text.splitlines()[0]:
        return csv_damages([str(c) for c in pd.read_csv(path, nrows=0).columns])
    return lines_damages(text.split())
