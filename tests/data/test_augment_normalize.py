import torch

from eossl.data.augment import AugmentConfig, MultiModalAugment
from eossl.data.modality import DEM, SENTINEL1_GRD, SENTINEL2_L2A, Modality
from eossl.data.normalize import BandNormalizer

LULC = Modality(name="lulc", kind="categorical", bands=("class",), dtype="uint8", gsd_m=(10.0,))
MODALITIES = {"s2": SENTINEL2_L2A, "s1": SENTINEL1_GRD, "dem": DEM, "lulc": LULC}


def _batch(n=16, size=16):
    # Every modality carries the same spatial "coordinate code" so we can check the geometry matches.
    code = torch.arange(size * size, dtype=torch.float32).view(1, 1, size, size).expand(n, 1, size, size)
    return {
        "s2": code.repeat(1, 12, 1, 1).clone(),
        "s1": code.repeat(1, 2, 1, 1).clone(),
        "dem": code.clone(),
        "lulc": code.long().clone(),
    }


def test_same_spatial_transform_for_every_modality():
    torch.manual_seed(0)
    geometric = AugmentConfig(
        crop_scale=(1.0, 1.0),
        brightness=0,
        band_gain=0,
        contrast=0,
        haze=0,
        noise_std=0,
        sar_offset_db=0,
        sar_noise_db=0,
    )
    out = MultiModalAugment(MODALITIES, geometric)(_batch())
    ref = out["dem"][:, 0]
    for key in ("s2", "s1"):
        assert torch.equal(out[key][:, 0], ref) and torch.equal(out[key][:, -1], ref)
    assert torch.equal(out["lulc"][:, 0].float(), ref)
    assert not torch.equal(ref, _batch()["dem"][:, 0])  # something did move


def test_crops_keep_categories_categorical_and_geometry_aligned():
    torch.manual_seed(1)
    batch = _batch()
    batch["lulc"] = batch["lulc"] % 5
    out = MultiModalAugment(MODALITIES, AugmentConfig(noise_std=0, sar_noise_db=0))(batch)
    assert out["lulc"].dtype == torch.long and set(out["lulc"].unique().tolist()) <= set(range(5))
    assert torch.equal(out["dem"], out["dem"])  # elevation only moved: values stay within the original range
    assert out["dem"].min() >= 0 and out["dem"].max() <= 255


def test_optical_jitter_is_per_band_and_plausible():
    torch.manual_seed(2)
    x = torch.full((64, 12, 8, 8), 0.2)
    out = MultiModalAugment({"s2": SENTINEL2_L2A}, AugmentConfig(crop_scale=(1.0, 1.0)))({"s2": x})["s2"]
    ratio = out.mean(dim=(2, 3)) / 0.2
    assert ratio.min() > 0.5 and ratio.max() < 1.8  # gains stay in a physically plausible band
    assert ratio.std(dim=1).mean() > 0.01  # bands are not all scaled identically (per-band gain)


def test_nan_inputs_are_filled_counted_and_never_reach_the_output():
    stats = {"s2": {"mean": [0.1] * 12, "std": [0.05] * 12}}
    norm = BandNormalizer(stats, ["s2"])
    x = torch.full((2, 12, 4, 4), 0.2)
    x[0, 3, 1, 1] = float("nan")
    x[1, 0, 0, 0] = float("inf")
    filled = norm.fill_invalid({"s2": x})
    assert norm.filled["s2"] == 2
    out = norm(filled)["s2"]
    assert torch.isfinite(out).all()
    assert out[0, 3, 1, 1] == 0  # filled with the band mean -> 0 after normalisation
    assert torch.allclose(out[0, 3, 0, 0], torch.tensor(2.0))
