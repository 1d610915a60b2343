"""Fuzz the importers with damaged text files: labels and metadata CSVs (geotiff-folder, BigEarthNet v2),
patch JSONs and split / snow / cloud lists (BigEarthNet v1), split lists (EuroSAT, SEN12MS) replaced by
random text or bytes, truncated, emptied, deleted, or kept parseable with nasty cells, dropped / renamed
/ added columns, duplicated rows, random JSON values and random lines (see :mod:`tests.fuzz._tables`).
Each import either succeeds and reads back or raises an EosslError naming the file, in raise and skip
mode (see :func:`tests.fuzz._harness.check_import`)."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz._datasets import DATASETS, Templates
from tests.fuzz._harness import EXAMPLES, FUZZ, check_import, fresh_copy, names_for
from tests.fuzz._tables import TEXT_FILES, table_damages, table_files

pytestmark = [
    pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
]


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> Templates:
    return Templates(tmp_path_factory.mktemp("fuzz-tables"))


@pytest.mark.parametrize("name", sorted(TEXT_FILES))
@settings(FUZZ, max_examples=EXAMPLES)
@given(data=st.data())
def test_a_damaged_table_or_list_is_imported_or_named(name, templates, data):
    dataset = DATASETS[name]
    template = templates[name]
    rel = data.draw(st.sampled_from(table_files(name, template)), label="file")
    damage = data.draw(table_damages(template / rel), label="damage")
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = fresh_copy(template, Path(tmp))
        damage.apply(source / rel)
        names = names_for(source / rel, source) + ([str(source)] if damage.kind == "delete" else [])
        check_import(dataset.kind, source, Path(tmp), dataset.options, source / rel, names)
