"""Rasters with holes: NaN and infinite pixels are nodata, never fed to a model, whether or not the file declares
a nodata value (NaN included)."""
from __future__ import annotations

from pathlib import Path

import fiona
import numpy as np
import pytest
import rasterio
from affine import Affine

from engine.inference.predictor import Predictor
from tests.hostile.helpers import cli


def _float_raster(path: Path, nodata: float | None, fill: float = np.nan) -> Path:
    """64 x 320 float32 scene (three 128-pixel tiles across); columns from 160 on are `fill` (the last tile all)."""
    rs = np.random.RandomState(0)
    data = rs.normal(0.1, 0.02, (1, 64, 320)).astype(np.float32)
    data[:, 10:30, 20:60] = 0.8
    data[:, :, 160:] = fill
    data[:, 5, 5] = np.inf  # a single broken pixel inside the valid part
    with rasterio.open(path, "w", driver="GTiff", width=320, height=64, count=1, dtype="float32", crs="EPSG:32633",
                       transform=Affine(10, 0, 500000, 0, -10, 4000000), nodata=nodata) as dst:
        dst.write(data)
    return path


@pytest.mark.parametrize("nodata", [None, float("nan"), -9999.0])
def test_nan_pixels_are_nodata_never_model_input(capsys, model: Path, tmp_path: Path, work: Path,
                                                 monkeypatch: pytest.MonkeyPatch, nodata: float | None) -> None:
    raster = _float_raster(tmp_path / "holes.tif", nodata, fill=np.nan if nodata != -9999.0 else -9999.0)
    if nodata == -9999.0:  # NaN inside the declared nodata region's neighbour: still never fed to the model
        with rasterio.open(raster, "r+") as dst:
            band = dst.read(1)
            band[40:50, 100:110] = np.nan
            dst.write(band, 1)
    real, seen = Predictor.predict, []

    def checked(self, images):
        seen.extend(bool(np.isfinite(np.asarray(im)).all()) for im in images)
        return real(self, images)

    monkeypatch.setattr(Predictor, "predict", checked)
    grid = work / "grid.gpkg"
    run = cli(capsys, "segment", raster, "--model", model, "--out", work / "o.gpkg", "--tile-grid", grid,
              "--progress", "none", "--value-range", "0,1")
    run.succeeded()
    assert seen and all(seen)  # every tile the model saw was finite
    with fiona.open(grid) as tiles:
        status = {t.properties["col_off"]: t.properties["status"] for t in tiles}
    assert status[0] == "run" and status[max(status)] == "nodata"


def test_all_nan_raster_gives_an_empty_layer(capsys, model: Path, tmp_path: Path, work: Path) -> None:
    raster = _float_raster(tmp_path / "empty.tif", None)
    with rasterio.open(raster, "r+") as dst:
        dst.write(np.full((1, 64, 320), np.nan, np.float32))
    run = cli(capsys, "segment", raster, "--model", model, "--out", work / "o.gpkg", "--progress", "none",
              "--value-range", "0,1")
    run.succeeded()
    with fiona.open(work / "o.gpkg") as src:
        assert len(src) == 0
