"""`eossl embed`: per-patch embeddings of GeoTIFF scenes, folders of them and stores as GeoParquet, with
bands matched by name, nodata patches skipped, footprints from the georeferencing, and nearest neighbours."""

from __future__ import annotations

import json

import geopandas
import numpy as np
import pyarrow.parquet as pq
import pyproj
import pytest
import rasterio
import shapely
import torch
from rasterio.transform import from_origin

from eossl.checkpoints import load_pretrained_encoders
from eossl.config import DataConfig, PretrainConfig
from eossl.data.modality import S2_BANDS
from eossl.data.normalize import normalize_input
from eossl.data.store import SampleStore
from eossl.deploy.embed import EmbedRequest, embed, nearest
from eossl.deploy.export import ExportRequest, export_encoder
from eossl.errors import ConfigError
from eossl.methods.pretrain import run_pretrain

WIDTH, HEIGHT, TILE = 96, 80, 32
NODATA_BLOCK = 40  # the top-left NODATA_BLOCK x NODATA_BLOCK pixels hold the file's nodata value (0)
SHUFFLED = tuple(np.random.default_rng(0).permutation(S2_BANDS))
ORIGIN = (500_000.0, 5_300_000.0)


@pytest.fixture(scope="module")
def run_dir(small_store, tmp_path_factory):
    """A pretraining run folder of a tiny SimCLR encoder trained for one step on 32 px patches."""
    root = tmp_path_factory.mktemp("embed")
    cfg = PretrainConfig(
        out=root / "run",
        data=DataConfig(store=small_store, batch_size=16),
        encoder={"name": "test_resnet", "img_size": TILE},
        method={"name": "simclr", "hidden_dim": 32, "projection_dim": 16},
        trainer={"max_steps": 1, "progress_bar": False},
        health={"knn_every_n_steps": 0, "knn_bank_size": 32, "knn_query_size": 16},
    )
    run_pretrain(cfg)
    return root / "run"


@pytest.fixture(scope="module")
def exported(run_dir):
    """The `eossl export` folder of that encoder."""
    return export_encoder(ExportRequest(source=run_dir, out=run_dir.parent / "export")).out


def _write_tif(path, names=SHUFFLED, crs="EPSG:32633", origin=ORIGIN, nodata_block=NODATA_BLOCK, describe=True):
    """A uint16 scene whose band ``name`` has a level of its own (so a band mix-up changes the features)."""
    rng = np.random.default_rng(0)
    level = {b: 500 + 300 * i for i, b in enumerate(S2_BANDS)}
    order = S2_BANDS if names is None else names  # no names: no band descriptions, the bands in S2 order
    data = np.stack([level[b] + rng.integers(0, 400, (HEIGHT, WIDTH)) for b in order]).astype(np.uint16)
    data[:, :nodata_block, :nodata_block] = 0
    transform = from_origin(*origin, 10.0, 10.0)
    with rasterio.open(path, "w", driver="GTiff", width=WIDTH, height=HEIGHT, count=len(order), dtype="uint16",
                       crs=crs, transform=transform, nodata=0) as dst:  # fmt: skip
        dst.write(data)
        if names is not None and describe:
            dst.descriptions = tuple(names)
        dst.update_tags(TIFFTAG_DATETIME="2021:06:15 10:30:00")
    return path


def _windows(stride):
    """Full windows and how many hold more than half nodata, counted from the nodata block by hand."""
    kept = skipped = 0
    for r in range(0, HEIGHT - TILE + 1, stride):
        for c in range(0, WIDTH - TILE + 1, stride):
            overlap = max(0, min(r + TILE, NODATA_BLOCK) - r) * max(0, min(c + TILE, NODATA_BLOCK) - c)
            skipped += overlap / TILE**2 > 0.5
            kept += overlap / TILE**2 <= 0.5
    return kept, skipped


def test_scene_embeddings_match_the_encoder_on_windows_read_by_hand(exported, tmp_path):
    tif = _write_tif(tmp_path / "scene.tif")
    calls = []
    summary = embed(EmbedRequest(exported, tif, tmp_path / "out.parquet", stride=16, device="cpu"),
                    progress=lambda done, total: calls.append((done, total)))  # fmt: skip
    kept, skipped = _windows(16)
    assert (kept, skipped) == (16, 4)  # 4 x 5 windows, 4 of them over the 40 x 40 nodata corner
    assert (summary.patches, summary.skipped_nodata, summary.crs) == (kept, skipped, "EPSG:32633")
    assert calls[-1] == (20, 20)
    gdf = geopandas.read_parquet(summary.out)
    assert len(gdf) == kept and gdf.crs == pyproj.CRS("EPSG:32633")
    assert list(gdf.columns) == ["source", "row", "col", "time", "nodata_share", "embedding", "geometry"]
    assert (gdf["time"] == np.datetime64("2021-06-15T10:30:00")).all()
    with rasterio.open(tif) as src:
        for row, col, geom in zip(gdf["row"], gdf["col"], gdf.geometry, strict=True):
            window = rasterio.windows.Window(col, row, TILE, TILE)
            assert np.allclose(geom.bounds, src.window_bounds(window)[:2] + src.window_bounds(window)[2:])
        pick = gdf[(gdf["row"] == 32) & (gdf["col"] == 32)].iloc[0]  # 8 x 8 nodata pixels in its corner
        assert pick["nodata_share"] == pytest.approx(64 / 1024)
        stored = src.read(window=rasterio.windows.Window(32, 32, TILE, TILE))
    pre = next(iter(load_pretrained_encoders(exported).values()))
    by_name = stored[[SHUFFLED.index(b) for b in S2_BANDS]]  # the model's band order, by name
    physical = pre.bands[0].to_physical(by_name)
    physical[by_name == 0] = np.nan
    with torch.no_grad():
        x = normalize_input(pre.normalizer, pre.modality, torch.from_numpy(physical)[None])
        expected = pre.encoder.eval()(x)[0].numpy()
        unordered = torch.from_numpy(pre.bands[0].to_physical(stored))[None]
        in_file_order = pre.encoder(normalize_input(pre.normalizer, pre.modality, unordered))[0]
    assert len(pick["embedding"]) == summary.dimension == expected.shape[0]
    assert np.allclose(pick["embedding"], expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(pick["embedding"], in_file_order.numpy(), rtol=1e-4, atol=1e-5)


def test_run_folders_and_checkpoints_default_to_their_patch_size_in_small_row_groups(run_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("eossl.deploy.embed.ROWS_PER_GROUP", 2)
    tif = _write_tif(tmp_path / "s.tif")
    for model in (run_dir, run_dir / "checkpoints" / "last.ckpt"):
        summary = embed(EmbedRequest(model, tif, tmp_path / "o.parquet", batch_size=1, overwrite=True))
        assert (summary.patches, summary.skipped_nodata) == _windows(TILE) == (5, 1)  # 32 px windows, stride 32
    assert pq.read_metadata(summary.out).num_row_groups == 3  # 2 + 2 + 1 rows
    gdf = geopandas.read_parquet(summary.out)
    geo = json.loads(pq.read_schema(summary.out).metadata[b"geo"])
    assert geo["primary_column"] == "geometry" and pyproj.CRS(geo["columns"]["geometry"]["crs"]) == gdf.crs
    assert gdf.total_bounds == pytest.approx([ORIGIN[0], ORIGIN[1] - 640, ORIGIN[0] + 960, ORIGIN[1]])


def test_store_source_gives_one_footprint_per_sample(exported, small_store, tmp_path):
    summary = embed(EmbedRequest(exported, small_store, tmp_path / "store.parquet", max_nodata=1.0, batch_size=100))
    store = SampleStore(small_store)
    gdf = geopandas.read_parquet(summary.out)
    assert len(gdf) == summary.patches == len(store) and gdf.crs == pyproj.CRS("EPSG:4326")
    assert (gdf["row"].to_numpy() == np.arange(len(store))).all() and (gdf["col"] == -1).all()
    assert list(gdf["time"]) == list(store.table["season"].astype(str))
    points = shapely.points(store.table["lon"], store.table["lat"])
    assert shapely.contains(gdf.geometry.to_numpy(), points).all()
    for geom in gdf.geometry[::40]:  # squares of 32 px x 10 m in their own UTM zone
        one = geopandas.GeoSeries([geom], crs="EPSG:4326")
        assert np.sqrt(one.to_crs(one.estimate_utm_crs()).area.iloc[0]) == pytest.approx(320, rel=1e-3)


def test_folder_source_reprojects_to_the_first_files_crs(exported, tmp_path):
    folder = tmp_path / "scenes"
    folder.mkdir()
    _write_tif(folder / "a.tif")
    _write_tif(folder / "b.tiff", names=None, crs="EPSG:32634", origin=(200_000.0, 5_300_000.0), nodata_block=0)
    (folder / "notes.txt").write_text("not a raster")
    with pytest.warns(UserWarning) as caught:
        summary = embed(EmbedRequest(exported, folder, tmp_path / "f.parquet"))
    messages = " ".join(str(w.message) for w in caught)
    assert "reprojected" in messages and "file order" in messages
    gdf = geopandas.read_parquet(summary.out)
    assert gdf.crs == pyproj.CRS("EPSG:32633") and summary.patches == 5 + 6
    assert sorted(set(gdf["source"])) == [str(folder / "a.tif"), str(folder / "b.tiff")]
    b = gdf[gdf["source"] == str(folder / "b.tiff")].set_crs(None, allow_override=True).set_crs("EPSG:32633")
    back = b.to_crs("EPSG:32634").geometry.iloc[0]  # window (0, 0) of b, back in its own CRS
    assert np.allclose(back.bounds, (200_000, 5_300_000 - 320, 200_320, 5_300_000), atol=0.5)


def test_bands_name_the_bands_of_files_without_descriptions(exported, tmp_path):
    described = embed(EmbedRequest(exported, _write_tif(tmp_path / "a.tif"), tmp_path / "a.parquet"))
    bare = _write_tif(tmp_path / "b.tif", describe=False)
    named = embed(EmbedRequest(exported, bare, tmp_path / "b.parquet", bands=list(SHUFFLED)))
    a, b = (np.stack(geopandas.read_parquet(s.out)["embedding"]) for s in (described, named))
    assert a.shape == (5, described.dimension) and np.allclose(a, b)
    with pytest.raises(ConfigError, match="--bands names 2"):
        embed(EmbedRequest(exported, bare, tmp_path / "c.parquet", bands=["B2", "B3"]))


def test_errors_name_what_is_wrong(exported, tmp_path):
    eleven = tmp_path / "eleven.tif"
    _write_tif(eleven, names=tuple(b for b in S2_BANDS if b != "B12"))
    with pytest.raises(ConfigError, match=r"eleven\.tif.*B12.*B11"):
        embed(EmbedRequest(exported, eleven, tmp_path / "x.parquet"))
    out = tmp_path / "exists.parquet"
    out.write_text("keep me")
    tif = _write_tif(tmp_path / "s.tif")
    with pytest.raises(ConfigError, match="already exists"):
        embed(EmbedRequest(exported, tif, out))
    assert out.read_text() == "keep me"
    assert embed(EmbedRequest(exported, tif, out, overwrite=True)).patches == 5
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    for bad in (tmp_path / "notes.txt", tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(ConfigError, match="SOURCE"):
            embed(EmbedRequest(exported, bad, tmp_path / "y.parquet"))
    with pytest.raises(ConfigError, match="no encoder for modality 's1'"):
        embed(EmbedRequest(exported, tif, tmp_path / "z.parquet", modality="s1"))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary files left


def test_nearest_finds_the_query_first(exported, tmp_path):
    summary = embed(EmbedRequest(exported, _write_tif(tmp_path / "s.tif"), tmp_path / "n.parquet", stride=16))
    found = nearest(summary.out, 3, k=4)
    assert len(found) == 4 and found.index[0] == 3
    assert found["similarity"].iloc[0] == pytest.approx(1.0, abs=1e-5)
    assert found["similarity"].is_monotonic_decreasing
    assert {"source", "row", "col", "geometry", "similarity"} <= set(found.columns)
    vector = geopandas.read_parquet(summary.out)["embedding"].iloc[7]
    assert nearest(summary.out, list(vector), k=1).index[0] == 7
