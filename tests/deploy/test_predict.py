"""``eossl predict``'s engine: tiled, blended inference over whole GeoTIFF scenes written in the real
layout (12-band uint16 Sentinel-2 DN, EPSG:32633, 10 m pixels, band descriptions, nodata 0)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import Affine, from_origin
from rasterio.warp import reproject, transform_bounds

from eossl.data.modality import S2_BANDS
from eossl.deploy.predict import PredictRequest, predict
from eossl.deploy.scene import window_grid, window_starts
from eossl.deploy.task_folder import load_task_model
from eossl.errors import ConfigError

ORIGIN = (500_000.0, 5_000_000.0)
NODATA_BLOCK = (slice(10, 30), slice(20, 50))  # rows, cols of the first 100 x 90 scene


def _training(**extra) -> dict:
    return {"epochs": 1, "min_steps": 2, "max_steps": 2, "lr": [1e-3], "encoder_lr_factor": [1.0], "validations": 1,
            "batch_size": 16, **extra}  # fmt: skip


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Task-model folders (segmentation, pixel regression, change, single-label) and an exported encoder."""
    from eossl.config import DataConfig, PretrainConfig
    from eossl.data.synth.generator import SynthSpec, synthesize_store
    from eossl.deploy.export import ExportRequest, export_encoder
    from eossl.deploy.finetune import FinetuneConfig, run_finetune
    from eossl.methods.pretrain import run_pretrain

    tmp = tmp_path_factory.mktemp("predict-models")
    spec = SynthSpec(num_locations=40, seasons=2, patch_size=32, seed=3, forest_targets=True, change_fraction=0.3)
    store = synthesize_store(tmp / "store", spec)
    tiny = {"name": "test_resnet", "img_size": 32}
    folders = {}
    for task in ("forest", "tree_density", "change", "label"):
        cfg = FinetuneConfig(out=tmp / task, data={"store": store}, init="random", encoder=tiny, task=task,
                             training=_training())  # fmt: skip
        run_finetune(cfg, log=lambda s: None)
        folders[task] = tmp / task
    pretrain = PretrainConfig(
        out=tmp / "pretrain", data=DataConfig(store=store, batch_size=16), encoder=tiny,
        method={"name": "simclr", "hidden_dim": 32, "projection_dim": 16},
        trainer={"max_steps": 1, "progress_bar": False},
        health={"knn_every_n_steps": 0, "knn_bank_size": 32, "knn_query_size": 16},
    )  # fmt: skip
    run_pretrain(pretrain)
    export_encoder(ExportRequest(source=tmp / "pretrain", out=tmp / "encoder"))
    folders["encoder"] = tmp / "encoder"
    return folders


def _field(rng: np.random.Generator, bands: int, height: int, width: int) -> np.ndarray:
    """Smooth noise with unit standard deviation: coarse noise upsampled, plus a little fine noise."""
    from scipy.ndimage import zoom

    coarse = rng.normal(size=(bands, height // 8 + 2, width // 8 + 2))
    smooth = zoom(coarse, (1, 8, 8), order=1)[:, :height, :width]
    values = smooth + 0.3 * rng.normal(size=smooth.shape)
    return (values - values.mean(axis=(1, 2), keepdims=True)) / values.std(axis=(1, 2), keepdims=True)


def _reflectance(stats: dict, height: int, width: int, seed: int = 0) -> np.ndarray:
    """``[12, h, w]`` reflectance like the training data's (its band means, 0.7 of its spread)."""
    mean, std = np.array(stats["mean"][:12])[:, None, None], np.array(stats["std"][:12])[:, None, None]
    return mean + 0.7 * std * _field(np.random.default_rng(seed), 12, height, width)


def _write(path: Path, reflectance: np.ndarray, *, order=S2_BANDS, factor: float = 10000.0, transform=None,
           crs="EPSG:32633", descriptions: bool = True, nodata_block: tuple | None = NODATA_BLOCK) -> Path:  # fmt: skip
    """A tiled, deflated uint16 GeoTIFF of ``reflectance`` (S2 band order) with bands in ``order``."""
    dn = np.clip(np.round(np.nan_to_num(reflectance * factor, nan=0)), 1, 65535).astype(np.uint16)
    dn[:, np.isnan(reflectance).all(axis=0)] = 0
    if nodata_block is not None:
        dn[:, nodata_block[0], nodata_block[1]] = 0
    dn = dn[[S2_BANDS.index(b) for b in order]]
    profile = {"driver": "GTiff", "width": dn.shape[2], "height": dn.shape[1], "count": len(order), "dtype": "uint16",
               "crs": crs, "transform": transform or from_origin(*ORIGIN, 10, 10), "nodata": 0, "tiled": True,
               "blockxsize": 64, "blockysize": 64, "compress": "deflate"}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(dn)
        if descriptions:
            for i, band in enumerate(order, 1):
                dst.set_band_description(i, band)
    return path


@pytest.fixture(scope="module")
def scenes(models, tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("scenes")
    stats = load_task_model(models["forest"]).stats
    small = _reflectance(stats, 90, 100)
    return {
        "small": _write(tmp / "small.tif", small),
        "shuffled": _write(tmp / "shuffled.tif", small, order=tuple(np.random.default_rng(1).permutation(S2_BANDS))),
        "large": _write(tmp / "large.tif", _reflectance(stats, 270, 300, seed=2)),
        "x10": _write(tmp / "x10.tif", small, factor=100000.0),  # reflectance x 100000: 10x the DN
    }


def _read(path: Path) -> tuple[np.ndarray, rasterio.profiles.Profile, dict]:
    with rasterio.open(path) as src:
        return (
            src.read(),
            src.profile,
            {
                "tags": src.tags(),
                "descriptions": src.descriptions,
                "layout": src.tags(ns="IMAGE_STRUCTURE"),
                "overviews": src.overviews(1),
            },
        )


def _run(models, scenes, tmp_path, name: str, model: str = "forest", inputs=("small",), progress=None, **options):
    paths = [scenes[s] if isinstance(s, str) else s for s in inputs]
    request = PredictRequest(model=models[model], scenes=paths, out=tmp_path / f"{name}.tif", device="cpu", **options)
    return predict(request, progress)


def test_window_starts_cover_the_scene_and_end_at_the_edge():
    assert window_starts(100, 32, 32) == [0, 32, 64, 68]
    assert window_starts(100, 32, 24) == [0, 24, 48, 68]
    assert window_starts(20, 32, 24) == [0] and window_starts(32, 32, 24) == [0]
    assert window_grid(90, 100, 32, 8, padded=True) == ([0, 24, 48, 72], [0, 24, 48, 72])


def test_segmentation_writes_a_cog_on_the_scene_grid(models, scenes, tmp_path):
    done = []
    summary = _run(models, scenes, tmp_path, "seg", inputs=["large"], output="both",
                   progress=lambda d, t: done.append((d, t)))  # fmt: skip
    classes, profile, meta = _read(summary.out)
    with rasterio.open(scenes["large"]) as src:
        assert (profile["crs"], profile["transform"]) == (src.crs, src.transform)
        assert (profile["width"], profile["height"]) == (src.width, src.height) == (summary.width, summary.height)
    assert meta["layout"].get("LAYOUT") == "COG" and meta["overviews"]
    assert profile["dtype"] == "uint8" and profile["nodata"] == 255 and meta["descriptions"] == ("forest",)
    assert meta["tags"]["CLASS_NAMES"] == '["non-forest", "forest"]'
    assert (classes[0][NODATA_BLOCK] == 255).all()
    inside = np.ones(classes.shape[1:], bool)
    inside[NODATA_BLOCK] = False
    assert set(np.unique(classes[0][inside])) <= {0, 1}
    probabilities, _, meta = _read(summary.outputs[1])
    assert summary.outputs[1].name == "seg.probabilities.tif" and meta["descriptions"] == ("non-forest", "forest")
    assert np.array_equal(probabilities.argmax(0)[inside], classes[0][inside])
    assert done[-1] == (summary.tiles, summary.tiles) and len(done) == -(-summary.tiles // 16)
    assert summary.peak_rss_mb > 0 and summary.tiles_per_second > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_blended_tiles_match_the_model_on_a_window(models, scenes, tmp_path):
    plain = _run(models, scenes, tmp_path, "plain", output="probabilities", tile=32, overlap=0)
    probabilities, _, _ = _read(plain.out)
    with rasterio.open(scenes["small"]) as src:  # an interior window the grid holds exactly
        dn = src.read(window=rasterio.windows.Window(32, 32, 32, 32)).astype(np.float32)
    x = torch.from_numpy(np.where(dn == 0, np.nan, dn / 10000).astype(np.float32))[None]
    direct = load_task_model(models["forest"])(x)["forest"].softmax(1)[0].numpy()
    # rows 32..57 of the window at (32, 32) are in no other window (the next row of windows starts at 58)
    np.testing.assert_allclose(probabilities[:, 32:58, 32:64], direct[:, :26], atol=1e-5)
    assert np.allclose(probabilities[:, ~np.isnan(probabilities[0])].sum(0), 1, atol=1e-5)
    blended = _run(models, scenes, tmp_path, "blended", output="probabilities", tile=32, overlap=12)
    assert blended.tiles > plain.tiles
    other, _, _ = _read(blended.out)
    valid = ~np.isnan(probabilities[0])
    assert np.array_equal(valid, ~np.isnan(other[0]))
    agree = (probabilities.argmax(0) == other.argmax(0))[valid].mean()
    assert agree > 0.9, agree


def test_bands_are_matched_by_name(models, scenes, tmp_path):
    ordered, _, _ = _read(_run(models, scenes, tmp_path, "ordered", output="probabilities").out)
    shuffled, _, _ = _read(_run(models, scenes, tmp_path, "shuffled", output="probabilities", inputs=["shuffled"]).out)
    np.testing.assert_allclose(shuffled, ordered, atol=1e-6)
    stats = load_task_model(models["forest"]).stats
    without = tuple(b for b in S2_BANDS if b != "B8A")
    missing = _write(tmp_path / "missing.tif", _reflectance(stats, 40, 40), order=without)
    with pytest.raises(ConfigError, match=r"missing\.tif.*B8A.*it has B1, B2"):
        _run(models, scenes, tmp_path, "none", inputs=[missing])
    assert not (tmp_path / "none.tif").exists()
    unnamed = _write(tmp_path / "unnamed.tif", _reflectance(stats, 90, 100), descriptions=False)
    with pytest.warns(UserWarning, match="no band descriptions"):
        summary = _run(models, scenes, tmp_path, "from-unnamed", inputs=[unnamed])
    assert any("no band descriptions" in w for w in summary.warnings)


def test_pixel_regression_writes_float_values_with_nan_nodata(models, scenes, tmp_path):
    values, profile, meta = _read(_run(models, scenes, tmp_path, "density", model="tree_density").out)
    assert profile["dtype"] == "float32" and values.shape == (1, 90, 100) and meta["descriptions"] == ("tree_density",)
    assert np.isnan(values[0][NODATA_BLOCK]).all() and np.isfinite(values).sum() == 90 * 100 - 20 * 30


def test_single_label_paints_a_smooth_map(models, scenes, tmp_path):
    probabilities, _, meta = _read(_run(models, scenes, tmp_path, "label", model="label", output="probabilities").out)
    assert probabilities.shape == (11, 90, 100) and meta["descriptions"][0] == "tree_cover"
    valid = ~np.isnan(probabilities[0])
    assert np.allclose(probabilities[:, valid].sum(0), 1, atol=1e-5)
    assert np.abs(np.diff(probabilities[:, 50:, :], axis=2)).max() < 0.2  # blended, no jumps at tile edges


def test_change_aligns_the_second_date_by_georeferencing(models, scenes, tmp_path):
    stats = load_task_model(models["change"]).stats
    after = _reflectance(stats, 90, 100, seed=5)
    # the second date: 20 m pixels, starting 200 m east of the first scene
    coarse = after[:, ::2, ::2][:, :, 10:]
    shifted = _write(tmp_path / "after20.tif", coarse, transform=from_origin(ORIGIN[0] + 200, ORIGIN[1], 20, 20),
                     nodata_block=None)  # fmt: skip
    summary = _run(models, scenes, tmp_path, "change", model="change", inputs=["small", shifted])
    change, profile, meta = _read(summary.out)
    with rasterio.open(scenes["small"]) as src:
        assert (profile["crs"], profile["transform"], profile["width"], profile["height"]) == (
            src.crs, src.transform, src.width, src.height)  # fmt: skip
    assert meta["descriptions"] == ("change",) and profile["dtype"] == "uint8"
    assert (change[0, :, :18] == 255).all() and (change[0][NODATA_BLOCK] == 255).all()  # not covered / nodata
    assert set(np.unique(change[0, 40:, 25:])) <= {0, 1}
    # the same date in another CRS (UTM 32N) lines up too
    with rasterio.open(scenes["small"]) as src:
        left, bottom, right, top = transform_bounds(src.crs, "EPSG:32632", *src.bounds)
    grid = from_origin(left - 100, top + 100, 10, 10)
    utm32 = np.full((12, int((top - bottom) / 10) + 20, int((right - left) / 10) + 20), np.nan, np.float32)
    reproject(after.astype(np.float32), utm32, src_transform=from_origin(*ORIGIN, 10, 10), src_crs="EPSG:32633",
              dst_transform=grid, dst_crs="EPSG:32632", dst_nodata=np.nan)  # fmt: skip
    other = _write(tmp_path / "after32.tif", utm32, transform=grid, crs="EPSG:32632", nodata_block=None)
    summary = _run(models, scenes, tmp_path, "change32", model="change", inputs=["small", other])
    change, profile, _ = _read(summary.out)
    assert profile["crs"].to_epsg() == 32633 and change.shape == (1, 90, 100)
    assert set(np.unique(change[0, 40:85, 5:95])) <= {0, 1}
    with pytest.raises(ConfigError, match="change model: pass 2 scenes"):
        _run(models, scenes, tmp_path, "one", model="change")
    with pytest.raises(ConfigError, match="takes one scene"):
        _run(models, scenes, tmp_path, "two", inputs=["small", "small"])


def test_features_of_an_exported_encoder(models, scenes, tmp_path):
    summary = _run(models, scenes, tmp_path, "features", model="encoder", features=True, tile=32)
    features, profile, _ = _read(summary.out)
    assert features.shape == (96, 3, 4) and profile["dtype"] == "float32"  # 4 x 3 windows of 32 px over 100 x 90
    assert profile["transform"] == from_origin(*ORIGIN, 10, 10) @ Affine.scale(32)
    assert np.isfinite(features).all()
    summary = _run(models, scenes, tmp_path, "features8", model="encoder", features=True, tile=32, overlap=8)
    features, profile, _ = _read(summary.out)
    assert features.shape == (96, 4, 4)  # a window every 24 px
    assert profile["transform"] == from_origin(*ORIGIN, 10, 10) @ Affine.translation(4, 4) @ Affine.scale(24)


def test_scaling_mismatch_warns(models, scenes, tmp_path):
    normal = _run(models, scenes, tmp_path, "normal")
    assert not [w for w in normal.warnings if "differently scaled" in w]
    with pytest.warns(UserWarning, match="differently scaled"):
        scaled = _run(models, scenes, tmp_path, "scaled", inputs=["x10"])
    assert [w for w in scaled.warnings if "differently scaled" in w and "band B" in w]


def test_existing_output_and_failed_runs(models, scenes, tmp_path):
    out = tmp_path / "out.tif"
    out.write_bytes(b"old")
    request = PredictRequest(model=models["forest"], scenes=[scenes["large"]], out=out, device="cpu")
    with pytest.raises(ConfigError, match="already exists"):
        predict(request)

    def fail(done: int, total: int) -> None:
        raise RuntimeError("interrupted")

    request.overwrite = True
    with pytest.raises(RuntimeError, match="interrupted"):
        predict(request, progress=fail)
    assert out.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]
    request.out = tmp_path / "new.tif"
    with pytest.raises(RuntimeError, match="interrupted"):
        predict(request, progress=fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]
    predict(request)
    with rasterio.open(request.out) as src:
        assert src.count == 1 and src.dtypes[0] == "uint8"
