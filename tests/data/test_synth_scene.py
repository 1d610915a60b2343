"""Synthetic scenes as GeoTIFFs (``eossl data synth-scene``): georeferenced in their UTM zone, bands named,
the truth on the same grid."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from eossl.cli.main import app
from eossl.data.modality import S2_BANDS
from eossl.errors import ConfigError

runner = CliRunner()


def test_scene_files_share_one_utm_grid(tmp_path):
    result = runner.invoke(app, ["data", "synth-scene", str(tmp_path / "scene"), "--size", "64", "--change"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "scene").iterdir())
    assert names == sorted(f"{n}.tif" for n in ("s2", "s1", "lulc", "forest", "tree_density", "s2_after", "change"))
    with rasterio.open(tmp_path / "scene" / "s2.tif") as s2, rasterio.open(tmp_path / "scene" / "change.tif") as cd:
        assert s2.crs.to_epsg() // 100 in (326, 327) and s2.res == (10.0, 10.0)
        assert s2.descriptions == S2_BANDS and s2.nodata == 0 and s2.dtypes[0] == "uint16"
        assert (cd.crs, cd.transform, cd.shape) == (s2.crs, s2.transform, s2.shape) == (s2.crs, s2.transform, (64, 64))
        reflectance = s2.read().astype(np.float32) / 10000
        assert 0.0 < np.median(reflectance) < 1.0 and set(np.unique(cd.read(1))) <= {0, 1}
    with pytest.raises(ConfigError, match="already holds files"):
        from eossl.data.synth.scene import write_scene

        write_scene(tmp_path / "scene", 64)
    with pytest.raises(ConfigError, match="multiple of 32"):
        write_scene(tmp_path / "other", 50)
