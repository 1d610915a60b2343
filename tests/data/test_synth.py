import numpy as np
import pandas as pd
import pytest

from eossl.data.synth import landcover as lc
from eossl.data.synth.generator import SynthSpec, generate_chunks, targets_from_map
from eossl.data.synth.sentinel2 import GREEN


def _generate(**kwargs):
    chunks = list(generate_chunks(SynthSpec(**kwargs)))
    arrays = {k: np.concatenate([c[0][k] for c in chunks]) for k in chunks[0][0]}
    return arrays, pd.concat([c[1] for c in chunks], ignore_index=True)


def test_generator_is_deterministic_and_seed_dependent():
    a, ta = _generate(num_locations=12, seed=1, chunk_locations=8)
    b, tb = _generate(num_locations=12, seed=1, chunk_locations=8)
    c, _ = _generate(num_locations=12, seed=2, chunk_locations=8)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    pd.testing.assert_frame_equal(ta, tb)
    assert not np.array_equal(a["s2"], c["s2"])


def test_shapes_dtypes_and_physical_ranges():
    arrays, table = _generate(num_locations=16, seasons=4, patch_size=24)
    n = 64
    assert arrays["s2"].shape == (n, 12, 24, 24) and arrays["s2"].dtype == np.uint16
    assert arrays["s1"].shape == (n, 2, 24, 24) and arrays["s1"].dtype == np.float32
    assert arrays["dem"].shape == (n, 1, 24, 24)
    assert arrays["lulc"].max() < lc.NUM_CLASSES
    reflectance = arrays["s2"] / 10000
    assert reflectance.min() > 0 and reflectance.max() <= 1.6
    assert -45 < arrays["s1"].mean() < 5  # dB
    assert set(table.season) == {"DJF", "MAM", "JJA", "SON"}
    # each location keeps one land-cover map across its seasons
    np.testing.assert_array_equal(arrays["lulc"][0], arrays["lulc"][3])
    assert not np.array_equal(arrays["s2"][0], arrays["s2"][2])


def test_class_spectra_have_realistic_shape():
    b = {name: i for i, name in enumerate(("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"))}
    tree, water, snow = GREEN[lc.TREE], GREEN[lc.WATER], GREEN[lc.SNOW]
    assert tree[b["B8"]] > 4 * tree[b["B4"]]  # red edge / NIR plateau of vegetation
    assert water[b["B8"]] < water[b["B3"]]  # water absorbs NIR
    assert snow[b["B3"]] > 0.8 and snow[b["B11"]] < 0.1  # bright visible, dark SWIR


def test_coarse_bands_are_blocky_and_clouds_are_masked():
    arrays, table = _generate(num_locations=32, seasons=4, patch_size=36)
    b1 = arrays["s2"][:, 0].astype(float)  # 60 m band: constant over 6x6 blocks
    assert np.all(b1[:, :6, :6] == b1[:, :1, :1])
    b8 = arrays["s2"][:, 7].astype(float)  # 10 m band varies inside those blocks
    assert np.any(b8[:, :6, :6] != b8[:, :1, :1])
    cloudy = arrays["cloud"].reshape(len(table), -1).mean(1) > 0.2
    assert cloudy.any() and not cloudy.all()
    blue = arrays["s2"][:, 1].astype(float)
    assert blue[arrays["cloud"][:, 0] == 1].mean() > 2 * blue[arrays["cloud"][:, 0] == 0].mean()


def test_targets_follow_the_map():
    classes = np.zeros((2, 10, 10), dtype=np.uint8)
    classes[0, :6] = lc.CROP
    classes[0, 6:] = lc.TREE
    classes[0, 9, 9] = lc.WATER  # 1% share: below the multi-label threshold
    classes[1] = lc.WATER
    t = targets_from_map(classes)
    assert t["label"].tolist() == [lc.CROP, lc.WATER]
    assert t["multilabel"][0, lc.CROP] == 1 and t["multilabel"][0, lc.TREE] == 1
    assert t["multilabel"][0, lc.WATER] == 0
    assert t["tree_cover"][0] == pytest.approx(0.39)


def test_priors_depend_on_climate():
    lat = np.array([0.0, 70.0, 48.0])
    zone = lc.climate_zone(lat, np.zeros(3), np.zeros(3))
    assert zone.tolist() == [lc.TROPICAL, lc.POLAR, lc.TEMPERATE]
    prior = lc.class_prior(zone, np.zeros(3))
    assert prior[1, lc.SNOW] > prior[0, lc.SNOW] and prior[0, lc.MANGROVE] > prior[1, lc.MANGROVE]
