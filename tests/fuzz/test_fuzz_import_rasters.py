"""Fuzz the importers with damaged rasters: one file of a tiny fake dataset (see
:mod:`tests.fuzz._datasets`) replaced by random bytes, truncated, bit-flipped, emptied, deleted or
rewritten with a random dtype / band count / size / CRS / nodata and NaN, infinite or extreme values.
Each import either succeeds and reads back or raises an EosslError naming the file, in raise and skip
mode (see :func:`tests.fuzz._harness.check_import`)."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz._damage import raster_damages
from tests.fuzz._datasets import DATASETS, Templates, files
from tests.fuzz._harness import EXAMPLES, FUZZ, check_import, fresh_copy, names_for

pytestmark = [
    pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
]


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> Templates:
    return Templates(tmp_path_factory.mktemp("fuzz-rasters"))


RASTER_DATASETS = sorted(set(DATASETS) - {"bigearthnet-v2"})  # v2 reads its rasters as v1 does


@pytest.mark.parametrize("name", RASTER_DATASETS)
@settings(FUZZ, max_examples=EXAMPLES)
@given(data=st.data())
def test_a_damaged_raster_is_imported_or_named(name, templates, data):
    dataset = DATASETS[name]
    template = templates[name]
    rel = data.draw(st.sampled_from(files(template, (".tif",))), label="raster")
    damage = data.draw(raster_damages(), label="damage")
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = fresh_copy(template, Path(tmp))
        damage.apply(source / rel)
        names = names_for(source / rel, source) + ([str(source)] if damage.kind == "delete" else [])
        check_import(dataset.kind, source, Path(tmp), dataset.options, source / rel, names)
