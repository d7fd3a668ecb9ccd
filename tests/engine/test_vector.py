"""Masks -> polygons, areas in m^2, and the atomic vector writer."""

import os

import fiona
import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry import MultiPolygon, Polygon, box

from engine.errors import UserError
from engine.vector import (
    FIELDS,
    VectorWriter,
    driver_for_path,
    geometry_area_m2,
    mask_to_geometry,
    pixel_area_m2,
)
from engine.vector import writer as writer_mod

UTM33 = CRS.from_epsg(32633)
T10 = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0)  # 10 m pixels, origin (500000, 4000000)


def _ring_mask() -> np.ndarray:
    mask = np.zeros((10, 10), dtype=bool)
    mask[1:9, 1:9] = True
    mask[4:6, 4:6] = False  # 2 x 2 hole
    return mask


def test_polygon_keeps_hole_and_is_valid() -> None:
    geom = mask_to_geometry(_ring_mask(), 0, 0, Affine.identity())
    assert isinstance(geom, Polygon) and geom.is_valid
    assert len(geom.interiors) == 1
    assert geom.area == 64 - 4
    assert Polygon(geom.interiors[0]).equals(box(4, 4, 6, 6))


def test_island_inside_hole() -> None:
    mask = np.ones((9, 9), dtype=bool)
    mask[2:7, 2:7] = False
    mask[4, 4] = True
    geom = mask_to_geometry(mask, 0, 0, Affine.identity())
    assert isinstance(geom, MultiPolygon) and geom.is_valid
    assert len(geom.geoms) == 2 and geom.area == 81 - 25 + 1


def test_corner_touching_checkerboard_is_valid() -> None:
    mask = (np.add.outer(np.arange(6), np.arange(6)) % 2 == 0)
    geom = mask_to_geometry(mask, 0, 0, Affine.identity())
    assert geom is not None and geom.is_valid
    assert geom.area == mask.sum()
    # Each pixel is its own part under 4-connectivity.
    assert isinstance(geom, MultiPolygon) and len(geom.geoms) == mask.sum()


def test_map_coordinates_with_offset() -> None:
    mask = np.ones((2, 3), dtype=bool)  # rows 5-6, cols 7-9 of the raster
    geom = mask_to_geometry(mask, 5, 7, T10)
    assert geom.bounds == (500070.0, 3999930.0, 500100.0, 3999950.0)
    assert geometry_area_m2(geom, UTM33) == pytest.approx(6 * 100.0)


def test_area_m2_equals_pixel_count_times_pixel_area() -> None:
    mask = _ring_mask()
    geom = mask_to_geometry(mask, 100, 200, T10)
    assert geometry_area_m2(geom, UTM33) == pytest.approx(mask.sum() * 100.0)
    assert geometry_area_m2(geom, "EPSG:32633") == pytest.approx(mask.sum() * 100.0)


def test_area_in_feet_crs_is_converted() -> None:
    foot = 0.3048006096012192  # US survey foot, EPSG:2263
    geom = box(0, 0, 100, 100)
    assert geometry_area_m2(geom, CRS.from_epsg(2263)) == pytest.approx(10000 * foot**2, rel=1e-9)


def test_geodesic_area_for_geographic_crs() -> None:
    # 0.001 deg x 0.001 deg at the equator: ~111.32 m x ~110.57 m.
    t = Affine(0.0001, 0.0, 0.0, 0.0, -0.0001, 0.0005)
    geom = mask_to_geometry(np.ones((10, 10), dtype=bool), 0, 0, t)
    area = geometry_area_m2(geom, CRS.from_epsg(4326))
    assert area == pytest.approx(111.32 * 110.57, rel=0.01)
    # At 60 deg N: ~55.80 km per degree of longitude, ~111.41 km per degree of latitude.
    high = shapely.affinity.translate(geom, 0.0, 60.0)
    assert geometry_area_m2(high, CRS.from_epsg(4326)) == pytest.approx(55.80 * 111.41, rel=0.01)


def test_area_needs_crs_and_pixel_fallback() -> None:
    geom = box(0, 0, 3, 4)
    with pytest.raises(ValueError, match="pixel_area_m2"):
        geometry_area_m2(geom, None)
    assert pixel_area_m2(geom, 0.5) == pytest.approx(3.0)


def test_simplify_and_empty() -> None:
    rr, cc = np.mgrid[0:60, 0:60] + 0.5
    disk = (rr - 30) ** 2 + (cc - 30) ** 2 <= 25**2
    exact = mask_to_geometry(disk, 0, 0, T10)
    simple = mask_to_geometry(disk, 0, 0, T10, simplify_tolerance=10.0)
    assert simple.is_valid
    assert len(simple.exterior.coords) < len(exact.exterior.coords) / 2
    assert simple.area == pytest.approx(exact.area, rel=0.03)
    assert mask_to_geometry(np.zeros((4, 4), dtype=bool), 0, 0, T10) is None


def _props(i: int) -> dict:
    return {"class_id": 1 + i % 2, "class_name": ["ship", "tank"][i % 2], "score": np.float32(0.5),
            "area_m2": 100.0 * (i + 1), "n_tiles": 1, "merged": bool(i % 2), "model": "m", "source": "s.tif"}


@pytest.mark.parametrize("name", ["out.gpkg", "out.shp", "out.geojson"])
def test_writer_round_trip(tmp_path, name) -> None:
    path = tmp_path / name
    geoms = [box(500000 + 100 * i, 3999000, 500050 + 100 * i, 3999050) for i in range(3)]
    with VectorWriter(path, UTM33.to_wkt(), "objects") as w:
        for i, g in enumerate(geoms):
            w.write(g, _props(i))
        assert w.count == 3
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["out.shp", "out.shx", "out.dbf", "out.prj", "out.cpg"] if name.endswith(".shp") else [name]
    )
    kwargs = {"layer": "objects"} if name.endswith(".gpkg") else {}
    with fiona.open(path, **kwargs) as src:
        assert CRS.from_wkt(src.crs.to_wkt()).to_epsg() == 32633
        assert list(src.schema["properties"]) == [n for n, _ in FIELDS]
        # Shapefile has one polygon type for both; the others keep MultiPolygon.
        assert src.schema["geometry"] == ("Polygon" if name.endswith(".shp") else "MultiPolygon")
        feats = list(src)
    assert len(feats) == 3
    assert feats[1].properties["merged"] == 1 and feats[1].properties["class_name"] == "tank"
    assert feats[2].properties["area_m2"] == pytest.approx(300.0)
    assert shapely.geometry.shape(feats[0].geometry).equals(geoms[0])


@pytest.mark.parametrize("name", ["empty.gpkg", "empty.shp", "empty.geojson"])
def test_empty_layer_is_valid(tmp_path, name) -> None:
    path = tmp_path / name
    with VectorWriter(path, UTM33.to_wkt(), "objects") as w:
        assert w.count == 0
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]
    with fiona.open(path) as src:
        assert len(src) == 0
        if not name.endswith(".geojson"):  # GeoJSON has no schema outside its features
            assert list(src.schema["properties"]) == [n for n, _ in FIELDS]
        assert CRS.from_wkt(src.crs.to_wkt()).to_epsg() == 32633


@pytest.mark.parametrize("name", ["out.gpkg", "out.shp"])
def test_exception_leaves_nothing_and_keeps_existing(tmp_path, name) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with VectorWriter(tmp_path / name, UTM33.to_wkt(), "objects") as w:
            w.write(box(0, 0, 1, 1), _props(0))
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    # An existing output survives a failed overwrite unchanged.
    with VectorWriter(tmp_path / name, UTM33.to_wkt(), "objects") as w:
        w.write(box(0, 0, 1, 1), _props(0))
    before = {p: (tmp_path / p).read_bytes() for p in os.listdir(tmp_path)}
    w = VectorWriter(tmp_path / name, UTM33.to_wkt(), "objects").open()
    w.write(box(0, 0, 2, 2), _props(1))
    w.abort()
    assert {p: (tmp_path / p).read_bytes() for p in os.listdir(tmp_path)} == before


def test_overwrite_replaces_existing(tmp_path) -> None:
    path = tmp_path / "out.geojson"
    for n in (3, 1):
        with VectorWriter(path, None, "objects") as w:
            for i in range(n):
                w.write(box(i, 0, i + 1, 1), _props(i))
    with fiona.open(path) as src:
        assert len(src) == 1
    assert os.listdir(tmp_path) == ["out.geojson"]


def test_bad_features_rejected(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown attribute"):
        with VectorWriter(tmp_path / "a.gpkg", None, "x") as w:
            w.write(box(0, 0, 1, 1), {"colour": "red"})
    with pytest.raises(ValueError, match="Polygon"):
        with VectorWriter(tmp_path / "a.gpkg", None, "x") as w:
            w.write(shapely.Point(0, 0), {})
    assert os.listdir(tmp_path) == []


def test_driver_for_path() -> None:
    assert driver_for_path("a/b.GPKG") == "GPKG"
    assert driver_for_path("b.shp") == "ESRI Shapefile"
    assert driver_for_path("b.json") == driver_for_path("b.geojson") == "GeoJSON"
    with pytest.raises(ValueError, match=r"output 'x\.csv': unsupported extension '\.csv'; use \.gpkg"):
        driver_for_path("x.csv")


def test_missing_directory_rejected_before_work(tmp_path) -> None:
    target = tmp_path / "nope" / "out.gpkg"
    with pytest.raises(UserError, match="does not exist"):
        VectorWriter(target, None, "x")
    assert not (tmp_path / "nope").exists()


def test_unwritable_directory_rejected(tmp_path, monkeypatch) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.geteuid() == 0:  # root ignores permission bits: simulate what the kernel would say

        def _denied(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(writer_mod.tempfile, "mkstemp", _denied)
    try:
        with pytest.raises(UserError, match=r"output '.*out\.gpkg'.*not writable"):
            VectorWriter(ro / "out.gpkg", None, "x")
        assert os.listdir(ro) == []
    finally:
        ro.chmod(0o700)
