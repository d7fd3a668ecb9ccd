"""segment_raster end to end with an oracle predictor (thresholding the bright fixture objects per tile):
seam de-duplication, polygons in the raster's CRS, attributes, nodata skipping, cancel, band checks."""
from __future__ import annotations

import contextlib
from pathlib import Path

import fiona
import numpy as np
import pytest
import torch
from rasterio.features import rasterize, shapes
from shapely.geometry import box, shape

from engine.errors import Cancelled, UserError
from engine.inference.segment import SegmentOptions, segment_raster
from engine.spec import ModelSpec, Normalisation, classes_from_names
from tests.data.make_fixtures import object_mask, write_scene_geotiff
from tests.engine.recording_progress import RecordingProgress

SPEC = ModelSpec(
    name="oracle", architecture="mask_rcnn", classes=classes_from_names(["ship"]), bands=1,
    normalisation=Normalisation(scale=1 / 255, mean=(0.0,), std=(1.0,)), tile_size=128, overlap=32,
    score_threshold=0.5, gsd_m=10.0,
)


class OraclePredictor:
    """Every tile: one instance per connected bright region (value > 0.5 after normalisation)."""

    def __init__(self, spec: ModelSpec = SPEC) -> None:
        self.spec = spec
        self.calls = 0
        self.tiles_seen = 0
        self.forward_seconds = 0.0
        self.device = torch.device("cpu")

    def min_score(self, threshold: float) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def predict(self, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        self.calls += 1
        self.tiles_seen += len(images)
        outs = []
        for im in images:
            fg = (im[0] > 0.5).astype(np.uint8)
            parts = [geom for geom, _ in shapes(fg, mask=fg.astype(bool), connectivity=4)]
            masks = np.stack([rasterize([g], out_shape=fg.shape) for g in parts]).astype(np.float32) if parts \
                else np.zeros((0, *fg.shape), np.float32)
            n = len(parts)
            outs.append({"boxes": np.zeros((n, 4), np.float32), "labels": np.ones(n, np.int64),
                         "scores": np.full(n, 0.9, np.float32), "masks": masks})
        return outs


CORNER_OBJECT = {"kind": "ellipse", "box": (100, 100, 156, 150), "class_id": 1}  # across the 2x2 tile corner


def test_object_across_tile_corner_is_one_polygon(tmp_path: Path) -> None:
    raster = tmp_path / "scene.tif"
    write_scene_geotiff(raster, objects=[CORNER_OBJECT])
    out = tmp_path / "out.gpkg"
    result = segment_raster(raster, out, OraclePredictor(), SegmentOptions(batch_size=3))
    assert result.tiles == 9 and result.features == 1
    with fiona.open(out) as layer:
        feats = list(layer)
        crs = layer.crs
    assert crs.to_epsg() == 32633
    props = feats[0]["properties"]
    # seen by 4 tiles; one of them saw it whole, and that owning view is kept (not a union of parts)
    assert props["class_name"] == "ship" and props["class_id"] == 1 and props["n_tiles"] >= 4
    assert props["merged"] == 0 and props["source"] == "scene.tif" and props["model"] == "oracle"
    geom = shape(feats[0]["geometry"])
    n_pixels = int(object_mask(CORNER_OBJECT, 256, 256).sum())
    assert props["area_m2"] == pytest.approx(n_pixels * 100.0, rel=1e-6)
    # map coordinates: 10 m pixels from (500000, 4000000), rows go south
    r0, c0, r1, c1 = CORNER_OBJECT["box"]
    expected = box(500000 + c0 * 10, 4000000 - r1 * 10, 500000 + c1 * 10, 4000000 - r0 * 10)
    assert geom.is_valid and geom.intersection(expected).area / geom.area > 0.99
    assert geom.area == pytest.approx(n_pixels * 100.0)


def test_empty_result_is_a_valid_empty_layer(tmp_path: Path) -> None:
    raster = tmp_path / "empty.tif"
    write_scene_geotiff(raster, objects=[])
    out = tmp_path / "none.gpkg"
    result = segment_raster(raster, out, OraclePredictor())
    assert result.features == 0
    with fiona.open(out) as layer:
        assert len(layer) == 0 and "class_name" in layer.schema["properties"]


def test_nodata_tiles_are_not_run(tmp_path: Path) -> None:
    raster = tmp_path / "nodata.tif"
    write_scene_geotiff(raster, width=512, objects=[], nodata=0)  # left 64 columns are nodata
    oracle = OraclePredictor()
    full = segment_raster(raster, tmp_path / "a.gpkg", oracle, SegmentOptions(tile_size=64, overlap=0))
    assert oracle.tiles_seen == full.tiles - 256 // 64  # the left column of 64-px tiles is skipped


def test_cancel_leaves_no_output(tmp_path: Path) -> None:
    raster = tmp_path / "scene.tif"
    write_scene_geotiff(raster)
    out = tmp_path / "cancelled.gpkg"
    progress = RecordingProgress(cancel_when=lambda p: p.polls > 2)  # the third poll cancels
    with pytest.raises(Cancelled):
        segment_raster(raster, out, OraclePredictor(), progress=progress)
    assert progress.tiles == 9 and progress.polls == 3
    assert not out.exists() and list(tmp_path.glob("*cancelled*")) == []


def test_band_mismatch_names_the_fix(tmp_path: Path) -> None:
    raster = tmp_path / "rgb.tif"
    write_scene_geotiff(raster, bands=3)
    with pytest.raises(UserError, match=r"3 band\(s\) selected.*--bands"):
        segment_raster(raster, tmp_path / "x.gpkg", OraclePredictor())
    result = segment_raster(raster, tmp_path / "ok.gpkg", OraclePredictor(), SegmentOptions(bands=[2]))
    assert result.features == 4


def test_raster_without_crs_works_in_pixels_with_a_warning(tmp_path: Path) -> None:
    raster = tmp_path / "nocrs.tif"
    write_scene_geotiff(raster, crs=None, objects=[{"kind": "rect", "box": (10, 20, 30, 60), "class_id": 1}])
    progress = RecordingProgress()
    out = tmp_path / "pix.geojson"
    segment_raster(raster, out, OraclePredictor(), progress=progress)
    assert any("no CRS" in w for w in progress.warnings)
    assert progress.advances[-1] == (9, 9) and progress.tiles == 9
    with fiona.open(out) as layer:
        feat = next(iter(layer))
    geom = shape(feat["geometry"])
    assert geom.bounds == pytest.approx((20, 10, 60, 30))  # x = column, y = row
    assert feat["properties"]["area_m2"] == pytest.approx(20 * 40 * SPEC.gsd_m**2)


def test_extent_limits_the_work_to_that_rectangle(tmp_path: Path) -> None:
    raster = tmp_path / "scene.tif"
    write_scene_geotiff(raster)  # 4 objects; the rect at rows 20-36, cols 30-70 is the only one in the extent
    oracle = OraclePredictor()
    extent = (500000.0, 4000000.0 - 640, 500000.0 + 1280, 4000000.0)  # rows 0-64, cols 0-128
    out = tmp_path / "part.gpkg"
    result = segment_raster(raster, out, oracle, SegmentOptions(extent=extent))
    assert result.tiles == oracle.tiles_seen == 1 and result.features == 1
    with fiona.open(out) as layer:
        geom = shape(next(iter(layer))["geometry"])
    assert geom.bounds == pytest.approx((500300, 4000000 - 360, 500700, 4000000 - 200))
    assert box(*extent).contains(geom)


def test_extent_of_a_raster_without_crs_is_in_pixels(tmp_path: Path) -> None:
    raster = tmp_path / "nocrs.tif"
    write_scene_geotiff(raster, crs=None)
    result = segment_raster(raster, tmp_path / "o.geojson", OraclePredictor(),
                            SegmentOptions(extent=(150, 150, 256, 256)))  # x = column, y = row
    assert result.tiles == 1 and result.features == 1  # the rect at rows 180-240, cols 190-200


def test_extent_outside_the_raster_names_both(tmp_path: Path) -> None:
    raster = tmp_path / "scene.tif"
    write_scene_geotiff(raster)
    with pytest.raises(UserError, match=r"--extent 0,0,10,10: does not intersect .*500000,3997440,502560,4000000"):
        segment_raster(raster, tmp_path / "o.gpkg", OraclePredictor(), SegmentOptions(extent=(0, 0, 10, 10)))
    assert not (tmp_path / "o.gpkg").exists()
