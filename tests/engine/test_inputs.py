"""Rasters as they come: 16-bit and float values, SAR dB, resampling to the model's GSD, geographic CRS."""
from __future__ import annotations

import math
from pathlib import Path

import fiona
import numpy as np
import pytest
import rasterio
from affine import Affine
from shapely.geometry import shape

from engine.errors import UserError
from engine.inference.segment import SegmentOptions, segment_raster
from engine.raster.input_values import InputScaling, apply_input_scaling, plan_input_scaling
from engine.raster.working_grid import accepted_gsd_range, check_utm_span, resampled_grid, utm_epsg
from engine.spec import Normalisation
from engine.tiling import map_bounds
from tests.data.make_fixtures import write_scene_geotiff
from tests.engine.test_segment import OraclePredictor

OBJ = {"kind": "rect", "box": (60, 80, 100, 160), "class_id": 1}  # rows 60-100, cols 80-160
NORM = Normalisation(scale=1 / 255, mean=(0.0,), std=(1.0,))


def _features(path: Path) -> list[dict]:
    with fiona.open(path) as layer:
        return [{"geom": shape(f["geometry"]), **dict(f["properties"])} for f in layer]


def _layer_crs(path: Path) -> str:
    with fiona.open(path) as layer:
        return layer.crs_wkt


# --- value scaling -------------------------------------------------------------------------------------------

def test_8bit_raster_into_8bit_model_uses_the_spec_scale() -> None:
    sample = np.array([[[0, 128, 255]]], np.uint8)
    plan = plan_input_scaling(NORM, "uint8", sample, None)
    assert plan == InputScaling()
    np.testing.assert_allclose(apply_input_scaling(sample, NORM, plan)[0, 0], [0, 128 / 255, 1], rtol=1e-6)


def test_16bit_raster_into_8bit_model_is_stretched_at_the_spec_percentiles() -> None:
    rs = np.random.RandomState(0)
    sample = rs.gamma(2.0, 300.0, size=(1, 64, 64)).astype(np.uint16)
    plan = plan_input_scaling(NORM, "uint16", sample, None)
    lo, hi = np.percentile(sample, NORM.stretch_percentiles)
    assert plan.mode == "range" and (plan.lo, plan.hi) == pytest.approx((lo, hi))
    out = apply_input_scaling(sample, NORM, plan)
    np.testing.assert_allclose(out, np.clip((sample - lo) / (hi - lo), 0, 1), rtol=1e-5, atol=1e-6)
    assert 0.004 < (out == 1).mean() < 0.006  # the top 0.5% saturates, no more
    given_range = plan_input_scaling(NORM, "uint16", sample, None, value_range=(0, 65535))
    np.testing.assert_allclose(apply_input_scaling(sample, NORM, given_range), sample / 65535, rtol=1e-5)


def test_sar_db_input_is_converted_to_amplitude_for_an_amplitude_model() -> None:
    amplitude = np.random.RandomState(1).gamma(4.0, 10.0, size=(1, 32, 32)).astype(np.float32) + 1
    db = (20 * np.log10(amplitude)).astype(np.float32) - 40  # calibrated dB values are negative
    plan = plan_input_scaling(NORM, "float32", db, None)  # auto: float with negative values
    assert plan.db_input and plan.mode == "range"
    from_amplitude = plan_input_scaling(NORM, "float32", amplitude / 100, None)
    np.testing.assert_allclose(apply_input_scaling(db, NORM, plan),
                               apply_input_scaling(amplitude / 100, NORM, from_amplitude), atol=1e-4)
    db_model = Normalisation(sar="db", mean=(0.0,), std=(1.0,), db_min=-30, db_max=10)
    as_db = plan_input_scaling(db_model, "float32", db, None)
    np.testing.assert_allclose(apply_input_scaling(db, db_model, as_db), np.clip((db + 30) / 40, 0, 1), atol=1e-6)
    np.testing.assert_allclose(apply_input_scaling(amplitude, db_model, InputScaling()),
                               np.clip((20 * np.log10(amplitude) + 30) / 40, 0, 1), atol=1e-5)


def test_16bit_scene_segments_like_its_8bit_twin(tmp_path: Path) -> None:
    """Same scene stored as uint8 and as uint16 (x 257): same polygons with --value-range 0,65535."""
    r8, r16 = tmp_path / "u8.tif", tmp_path / "u16.tif"
    write_scene_geotiff(r8, objects=[OBJ])
    with rasterio.open(r8) as src:
        profile, data = src.profile, src.read()
    profile.update(dtype="uint16")
    with rasterio.open(r16, "w", **profile) as dst:
        dst.write(data.astype(np.uint16) * 257)
    a = segment_raster(r8, tmp_path / "a.gpkg", OraclePredictor(), SegmentOptions())
    b = segment_raster(r16, tmp_path / "b.gpkg", OraclePredictor(), SegmentOptions(value_range=(0, 65535)))
    auto = segment_raster(r16, tmp_path / "c.gpkg", OraclePredictor(), SegmentOptions())
    assert a.notes == [] and any("stretched" in n for n in auto.notes)
    geoms = [_features(tmp_path / f"{n}.gpkg") for n in "abc"]
    assert a.features == b.features == auto.features == 1
    assert geoms[0][0]["geom"].symmetric_difference(geoms[1][0]["geom"]).area == 0
    assert geoms[0][0]["geom"].symmetric_difference(geoms[2][0]["geom"]).area <= 0.05 * geoms[0][0]["geom"].area


# --- resampling --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_resampled_grid_keeps_the_footprint(seed: int) -> None:
    rs = np.random.RandomState(seed)
    for _ in range(40):
        height, width = (int(v) for v in rs.randint(1, 5000, 2))
        pixel, factor = rs.uniform(0.05, 20), rs.uniform(0.1, 30)
        t = Affine(pixel, 0, 1000.0, 0, -pixel, 5000.0)
        new_t, new_h, new_w = resampled_grid(t, height, width, factor)
        assert map_bounds(new_t, new_h, new_w) == pytest.approx(map_bounds(t, height, width), rel=1e-9, abs=1e-6)
        assert new_h == max(1, round(height / factor)) and new_w == max(1, round(width / factor))


def test_accepted_range_is_the_trained_range_or_the_tolerance() -> None:
    assert accepted_gsd_range(10.0, None, 0.25) == pytest.approx((8.0, 12.5))
    assert accepted_gsd_range(3.0, (1.0, 15.0), 0.25) == (1.0, 15.0)


def test_finer_raster_is_resampled_and_polygons_land_where_the_object_is(tmp_path: Path) -> None:
    """A 5 m raster and a 10 m model: the model sees 10 m pixels, the polygon is in the raster's CRS."""
    raster = tmp_path / "fine.tif"
    write_scene_geotiff(raster, height=256, width=256, gsd=5.0, objects=[OBJ])
    oracle = OraclePredictor()
    out = tmp_path / "out.gpkg"
    result = segment_raster(raster, out, oracle, SegmentOptions(tile_size=64, overlap=16))
    assert any("resampled from 5 m to the model's 10 m" in n for n in result.notes)
    assert result.tiles == 9  # 128 x 128 working pixels in 64-px tiles with 16 overlap: 3 x 3
    (feat,) = _features(out)
    # the object in map units: x 500000 + 5 * (80..160), y 4000000 - 5 * (60..100)
    expected = (500400.0, 3999500.0, 500800.0, 3999700.0)
    assert feat["geom"].bounds == pytest.approx(expected, abs=10.0)  # within one 10 m working pixel
    assert feat["area_m2"] == pytest.approx(400 * 200, rel=0.1)
    native = segment_raster(raster, tmp_path / "native.gpkg", OraclePredictor(),
                            SegmentOptions(tile_size=64, overlap=16, resample=False))
    assert native.notes == [] and native.tiles == 25


# --- geographic CRS -----------------------------------------------------------------------------------------

def test_utm_zone_of_a_point() -> None:
    assert utm_epsg(3.0, 51.0) == 32631
    assert utm_epsg(-70.6, -33.4) == 32719
    assert utm_epsg(179.9, 10) == 32660 and utm_epsg(-180, 10) == 32601


def test_geographic_raster_is_processed_in_utm_and_written_in_its_own_crs(tmp_path: Path) -> None:
    raster = tmp_path / "wgs84.tif"
    deg = 10.0 / 111_320  # about 10 m of latitude
    write_scene_geotiff(raster, crs="EPSG:4326", gsd=deg, objects=[OBJ])
    with rasterio.open(raster, "r+") as ds:  # move it to 15 E, 45 N (UTM 33N)
        ds.transform = Affine(deg, 0, 15.0, 0, -deg, 45.0)
    out = tmp_path / "out.gpkg"
    result = segment_raster(raster, out, OraclePredictor(), SegmentOptions(gsd_tolerance=1.0))
    assert any("UTM (EPSG:32633)" in n for n in result.notes)
    assert "4326" in _layer_crs(out) or "WGS 84" in _layer_crs(out)
    (feat,) = _features(out)
    x0, y0, x1, y1 = feat["geom"].bounds
    # the object: cols 80-160, rows 60-100 of the geographic grid
    assert (x0, x1) == pytest.approx((15.0 + 80 * deg, 15.0 + 160 * deg), abs=2 * deg)
    assert (y1, y0) == pytest.approx((45.0 - 60 * deg, 45.0 - 100 * deg), abs=2 * deg)
    true_area = (80 * 10.0 * math.cos(math.radians(45))) * (40 * 10.0)  # m^2, degrees shrink east-west
    assert feat["area_m2"] == pytest.approx(true_area, rel=0.15)


def test_geographic_raster_too_wide_for_one_utm_zone_is_refused(tmp_path: Path) -> None:
    raster = tmp_path / "world.tif"
    write_scene_geotiff(raster, height=64, width=128, crs="EPSG:4326", gsd=0.25, objects=[])
    with rasterio.open(raster, "r+") as ds:
        ds.transform = Affine(0.25, 0, -10.0, 0, -0.25, 40.0)  # 32 degrees wide
    with pytest.raises(UserError, match="geographic CRS and it spans 32.0 degrees.*reproject"):
        segment_raster(raster, tmp_path / "out.gpkg", OraclePredictor())
    assert check_utm_span(0, 85, 1, 86) is not None and check_utm_span(0, 0, 1, 1) is None
    # a narrow --extent inside it is fine
    result = segment_raster(raster, tmp_path / "part.gpkg", OraclePredictor(),
                            SegmentOptions(extent=(0.0, 30.0, 2.0, 32.0), gsd_tolerance=1e6))
    assert result.tiles >= 1 and any("UTM (EPSG:32631)" in n for n in result.notes)
