"""The synthetic Earth's dense-task and hyperspectral options: forest targets, change pairs, EnMAP-like cubes."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from eossl.cli.main import app
from eossl.data.band_stats import BandStatistics
from eossl.data.modality import Modality
from eossl.data.normalize import BandNormalizer, normalize_input
from eossl.data.store import SampleStore
from eossl.data.synth import changes as ch
from eossl.data.synth import landcover as lc
from eossl.data.synth.forest import tree_density
from eossl.data.synth.generator import SynthSpec, generate_chunks, synthesize_store
from eossl.data.synth.hyperspectral import WATER_VAPOUR_NM, enmap_wavelengths, water_vapour_bands


def _generate(**kwargs):
    chunks = list(generate_chunks(SynthSpec(**kwargs)))
    arrays = {k: np.concatenate([c[0][k] for c in chunks]) for k in chunks[0][0]}
    return arrays, pd.concat([c[1] for c in chunks], ignore_index=True)


@pytest.fixture(scope="module")
def changed():
    return _generate(num_locations=24, seasons=2, patch_size=32, change_fraction=0.5, chunk_locations=12, seed=3)


@pytest.fixture(scope="module")
def hyperspectral():
    return _generate(num_locations=16, seasons=2, patch_size=32, hyperspectral_bands=202, seed=1)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    spec = SynthSpec(
        num_locations=16, seasons=1, patch_size=32, forest_targets=True, change_fraction=0.5, hyperspectral_bands=202
    )
    return synthesize_store(tmp_path_factory.mktemp("synth") / "dense", spec)


def test_forest_mask_and_tree_density_follow_the_land_cover():
    arrays, _ = _generate(num_locations=8, seasons=2, patch_size=32, forest_targets=True)
    lulc, forest, density = arrays["lulc"], arrays["forest"], arrays["tree_density"]
    assert forest.shape == lulc.shape and forest.dtype == np.uint8 and density.dtype == np.float32
    np.testing.assert_array_equal(forest, np.isin(lulc, (lc.TREE, lc.MANGROVE)))
    assert density.min() >= 0 and density.max() <= 1 and 0 < forest.mean() < 1
    padded = np.pad(forest[:, 0].astype(float), ((0, 0), (2, 2), (2, 2)), mode="symmetric")  # scipy's 'reflect'
    for y, x in ((0, 0), (10, 17), (31, 5)):
        np.testing.assert_allclose(density[:, 0, y, x], padded[:, y : y + 5, x : x + 5].mean(axis=(1, 2)), atol=1e-6)
    np.testing.assert_array_equal(forest[0], forest[1])  # static per location, repeated per season


def test_tree_density_by_hand():
    mask = np.zeros((1, 8, 8), dtype=np.uint8)
    mask[0, 0, 0] = 1  # the corner pixel counts twice per axis with reflect padding: 4 of 25 cells
    mask[0, 4:, 4:] = 1
    density = tree_density(mask)
    assert density[0, 0, 0] == pytest.approx(4 / 25)
    assert density[0, 5, 5] == pytest.approx(16 / 25)  # rows and columns 3..7: 4 x 4 tree pixels
    assert density[0, 7, 7] == pytest.approx(1.0)  # row/column 8 reflects onto 7
    assert density[0, 2, 2] == pytest.approx(2 / 25)  # the 5x5 window around (2, 2) holds (0, 0) and (4, 4)


def test_changes_are_real_and_at_the_same_locations_every_season(changed):
    arrays, table = changed
    assert arrays["s2_after"].shape == arrays["s2"].shape and arrays["s2_after"].dtype == np.uint16
    change = arrays["change"][:, 0].astype(bool)
    assert set(table.change_type) <= set(ch.CHANGE_TYPES)
    is_changed = (table.change_type != "none").to_numpy()
    assert 0.2 < is_changed.mean() < 0.8
    assert change[is_changed].any(axis=(1, 2)).all() and not change[~is_changed].any()
    np.testing.assert_allclose(table.change_share, change.mean(axis=(1, 2)), atol=1e-4)
    assert table.change_share[is_changed].between(0.04, 0.31).all()
    for _, rows in table.groupby("location_id"):  # one change per place, the same in each season
        assert rows.change_type.nunique() == 1
        np.testing.assert_array_equal(change[rows.index[0]], change[rows.index[-1]])
    before = arrays["lulc"][:, 0]
    for kind, allowed in ch.ELIGIBLE.items():
        rows = (table.change_type == ch.CHANGE_TYPES[kind]).to_numpy()
        assert np.isin(before[rows][change[rows]], allowed).all()
    # flooded pixels turn dark in the NIR one year later
    flooded = change & (table.change_type == "flooding").to_numpy()[:, None, None]
    if flooded.any():
        nir_before, nir_after = arrays["s2"][:, 7][flooded], arrays["s2_after"][:, 7][flooded]
        assert np.median(nir_after) < 0.5 * np.median(nir_before)


def test_change_mask_is_where_the_classes_differ():
    rng = np.random.default_rng(5)
    prior = lc.class_prior(rng.integers(0, 5, 40), np.zeros(40))
    cover = lc.sample_landcover(rng, prior, 32)
    relief = rng.random((40, 32, 32)).astype(np.float32)
    result = ch.inject_changes(rng, cover, relief, fraction=0.7)
    np.testing.assert_array_equal(result.mask, result.after.classes != cover.classes)
    built = result.mask & (result.kind == ch.BUILT_UP)[:, None, None]
    assert (result.after.classes[built] == lc.BUILT).all()
    assert (result.after.parcel_id[result.after.classes != lc.CROP] == -1).all()
    untouched = result.kind == ch.NONE
    np.testing.assert_array_equal(result.after.classes[untouched], cover.classes[untouched])


def test_hyperspectral_cube_bands_gaps_and_red_edge(hyperspectral):
    arrays, table = hyperspectral
    cube = arrays["enmap"]
    assert cube.shape == (32, 202, 32, 32) and cube.dtype == np.float32
    _, wavelengths = enmap_wavelengths(202)
    wl = np.asarray(wavelengths)
    assert 415 < wl.min() < 425 and 2440 < wl.max() < 2455
    gaps = np.any([(wl >= lo) & (wl <= hi) for lo, hi in WATER_VAPOUR_NM], axis=0)
    np.testing.assert_array_equal(water_vapour_bands(wl), gaps)
    assert gaps.sum() >= 4
    assert np.isnan(cube[:, gaps]).all() and np.isfinite(cube[:, ~gaps]).all()
    summer = ((table.season == "JJA") == (table.lat > 0)) & (table.climate_zone != "polar")  # no snow
    clear_forest = (arrays["lulc"][:, 0] == lc.TREE) & (arrays["cloud"][:, 0] == 0) & summer.to_numpy()[:, None, None]
    assert clear_forest.sum() > 50
    red, nir = np.argmin(abs(wl - 670)), np.argmin(abs(wl - 850))
    assert cube[:, nir][clear_forest].mean() > 2.5 * cube[:, red][clear_forest].mean()
    # consistent with Sentinel-2 at its band centres (B4, B8)
    for band, centre in ((3, 665.0), (7, 842.0)):
        hsi = cube[:, np.argmin(abs(wl - centre))]
        assert np.corrcoef(hsi.ravel(), arrays["s2"][:, band].ravel())[0, 1] > 0.85


def test_options_are_deterministic_and_leave_the_base_arrays_alone():
    kwargs = dict(num_locations=6, seasons=1, patch_size=16, forest_targets=True, change_fraction=0.5)
    a, ta = _generate(**kwargs, hyperspectral_bands=24, seed=4)
    b, tb = _generate(**kwargs, hyperspectral_bands=24, seed=4)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    pd.testing.assert_frame_equal(ta, tb)
    c, _ = _generate(**kwargs, hyperspectral_bands=24, seed=5)
    assert not np.array_equal(np.nan_to_num(a["enmap"]), np.nan_to_num(c["enmap"]))
    plain, plain_table = _generate(num_locations=6, seasons=1, patch_size=16, seed=4)
    for key in plain:
        np.testing.assert_array_equal(a[key], plain[key])
    pd.testing.assert_frame_equal(ta[plain_table.columns], plain_table)


def test_statistics_of_an_all_nan_band_are_finite_placeholders():
    x = np.random.default_rng(0).random((4, 3, 8, 8)).astype(np.float32)
    x[:, 1] = np.nan
    stats = BandStatistics(3)
    modality = Modality("m", "optical", ("a", "b", "c"), "float32", (10.0,) * 3, nodata=float("nan"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats.update(x, modality.nodata)
        result = stats.result(modality)
    assert all(np.isfinite(result[k]).all() for k in ("mean", "std", "p2", "p98"))
    assert result["valid"][1] == 0 and result["mean"][1] == 0 and result["std"][1] == 1
    assert result["nonfinite"][1] == x[:, 1].size and result["valid"][0] == x[:, 0].size


def test_dense_store_round_trips_and_shows(store):
    s = SampleStore(store)
    assert {"forest", "tree_density", "change", "s2_after", "enmap"} <= set(s.arrays)
    assert s.targets["forest"].kind == "segmentation" and s.targets["forest"].class_names == ("non-forest", "forest")
    assert s.targets["tree_density"].kind == "pixel-regression" and s.targets["tree_density"].strata == "label"
    assert s.targets["change"].kind == "change" and s.targets["change"].class_names == ("no change", "change")
    pair = s.pairs["s2_change"]
    assert (pair.before, pair.after, pair.target) == ("s2", "s2_after", "change")
    enmap = s.modalities["enmap"]
    assert enmap.num_bands == 202 and set(enmap.gsd_m) == {30.0} and np.isnan(enmap.nodata)
    assert enmap.units == "reflectance" and enmap.product == "L2A-synthetic"
    assert s.modalities["s2_after"].bands == s.modalities["s2"].bands
    gaps = water_vapour_bands(enmap.wavelengths_nm)
    stats = s.stats["enmap"]
    assert all(np.isfinite(stats[k]).all() for k in ("mean", "std", "p2", "p98"))
    assert (np.asarray(stats["valid"])[gaps] == 0).all() and (np.asarray(stats["valid"])[~gaps] > 0).all()
    assert s.attrs["enmap"]["invalid_bands"] == [b for b, bad in zip(enmap.bands, gaps, strict=True) if bad]
    assert {"change_type", "change_share"} <= set(s.table.columns)

    normalizer = BandNormalizer(s.stats, ["enmap"])
    batch = torch.from_numpy(enmap.to_physical(s.read("enmap", np.arange(4))))
    assert torch.isnan(batch).any()
    normalised = normalize_input(normalizer, "enmap", batch)
    assert torch.isfinite(normalised).all() and normalised[:, torch.from_numpy(gaps)].abs().max() == 0

    result = CliRunner().invoke(app, ["data", "show", str(store), "--count", "2"])
    assert result.exit_code == 0, result.output
    for text in ("s2_change: s2 -> s2_after, change target change", "forest", "tree_density", "pixel-regression"):
        assert text in result.output
    assert "enmap" in result.output and "GSD 30 m" in result.output
