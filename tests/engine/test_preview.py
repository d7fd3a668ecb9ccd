"""render_preview: outlines land on the expected pixels, the image keeps its stretched values."""

from pathlib import Path

import fiona
import numpy as np
import pytest
import rasterio
from fiona.crs import CRS as FionaCRS
from fiona.transform import transform_geom
from PIL import Image
from shapely.geometry import Polygon, box, mapping

from engine.errors import UserError
from engine.vector.preview import render_preview, stretch_to_uint8
from tests.data.make_fixtures import write_scene_geotiff

ORIGIN_X, ORIGIN_Y, GSD = 500000.0, 4000000.0, 10.0  # make_fixtures' scene georeference
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _map_box(r0: float, c0: float, r1: float, c1: float) -> Polygon:
    """Pixel-edge box (rows r0..r1, columns c0..c1) as a polygon in the fixture's map coordinates."""
    return box(ORIGIN_X + c0 * GSD, ORIGIN_Y - r1 * GSD, ORIGIN_X + c1 * GSD, ORIGIN_Y - r0 * GSD)


def _ring(shape: tuple[int, int], r0: int, c0: int, r1: int, c1: int, width: int = 2) -> np.ndarray:
    """Expected outline mask of a pixel-edge box: ``width // 2`` pixels either side of each edge."""
    half = width // 2
    outer = np.zeros(shape, dtype=bool)
    outer[r0 - half : r1 + half, c0 - half : c1 + half] = True
    inner = np.zeros(shape, dtype=bool)
    inner[r0 + half : r1 - half, c0 + half : c1 - half] = True
    return outer & ~inner


def _is(png: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return np.all(png == np.asarray(colour, dtype=np.uint8), axis=-1)


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "RGB"
        return np.asarray(im).copy()


def test_outline_on_expected_pixels_and_interior_keeps_grey(tmp_path: Path) -> None:
    tif = tmp_path / "scene.tif"
    objects = write_scene_geotiff(tif)
    r0, c0, r1, c1 = objects[0]["box"]  # the bright rectangle (20, 30, 36, 70)
    square = (r0 - 12, c0 - 5, r0 - 12 + 50, c0 - 5 + 50)  # 50 x 50 px square around it
    out = render_preview(tif, [(_map_box(*square), 1, 0.9)], tmp_path / "preview.png")
    assert out == tmp_path / "preview.png"
    png = _read(out)
    assert png.shape == (256, 256, 3)

    expected = _ring((256, 256), *square)
    red = _is(png, RED)
    assert red.sum() == expected.sum()
    assert np.array_equal(red, expected)
    sr0, sc0, sr1, sc1 = square  # spot checks: both pixels straddling each edge, none beyond
    assert _is(png, RED)[(sr0 + sr1) // 2, [sc0 - 1, sc0, sc1 - 1, sc1]].all()
    assert _is(png, RED)[[sr0 - 1, sr0, sr1 - 1, sr1], (sc0 + sc1) // 2].all()
    assert not _is(png, RED)[(sr0 + sr1) // 2, [sc0 - 2, sc0 + 1, sc1 - 2, sc1 + 1]].any()

    # Everything but the outline is the 2-98 % grey stretch of the raster (computed here on its own).
    with rasterio.open(tif) as src:
        band = src.read(1).astype(float)
    lo, hi = np.percentile(band, [2, 98])
    grey = np.rint(np.clip((band - lo) * 255.0 / (hi - lo), 0, 255)).astype(np.uint8)
    rest = ~expected
    assert np.array_equal(png[..., 0][rest], grey[rest])
    assert np.array_equal(png[..., 1], png[..., 2])
    assert np.array_equal(png[..., 0][rest], png[..., 1][rest])
    obj_interior = png[r0 + 2 : r1 - 2, c0 + 2 : c1 - 2]  # the bright object inside the square
    background = png[sr0 + 4 : r0 - 2, sc0 + 4 : sc1 - 4]  # dark sea inside the square
    assert obj_interior[..., 0].mean() > 200 and background[..., 0].mean() < 60


def test_downsampled_preview_scales_coordinates(tmp_path: Path) -> None:
    tif = tmp_path / "scene.tif"
    write_scene_geotiff(tif)
    square = (20, 40, 120, 140)  # pixel edges on even positions: halve exactly
    out = render_preview(tif, [(_map_box(*square), 1, None)], tmp_path / "small.png", max_size=128)
    png = _read(out)
    assert png.shape == (128, 128, 3)
    assert np.array_equal(_is(png, RED), _ring((128, 128), *(v // 2 for v in square)))


def test_holes_are_drawn_and_colours_follow_class(tmp_path: Path) -> None:
    tif = tmp_path / "scene.tif"
    write_scene_geotiff(tif)
    outer, hole = (60, 60, 160, 160), (90, 90, 130, 130)
    ring_polygon = Polygon(_map_box(*outer).exterior.coords, [_map_box(*hole).exterior.coords])
    other = (180, 10, 230, 60)
    feats = [(ring_polygon, 2, 0.5), (_map_box(*other), 7, 0.8)]
    png = _read(render_preview(tif, feats, tmp_path / "p.png", colours={2: "#00ff00"}))
    expected_green = _ring((256, 256), *outer) | _ring((256, 256), *hole)
    assert np.array_equal(_is(png, GREEN), expected_green)
    assert np.array_equal(_is(png, RED), _ring((256, 256), *other))  # class 7: default red


def test_three_band_raster_renders_rgb(tmp_path: Path) -> None:
    tif = tmp_path / "rgb.tif"
    objects = write_scene_geotiff(tif, bands=3)
    rect, ellipse = objects[0]["box"], objects[1]["box"]
    with rasterio.open(tif, "r+") as dst:  # make the rectangle red-only and the ellipse blue-only
        data = dst.read()
        dark = 1  # below every band's 2nd percentile: stretched to 0
        r0, c0, r1, c1 = rect
        data[1:, r0:r1, c0:c1] = dark
        r0, c0, r1, c1 = ellipse
        data[:2, r0:r1, c0:c1] = dark
        dst.write(data)

    png = _read(render_preview(tif, [], tmp_path / "rgb.png"))
    r0, c0, r1, c1 = rect
    centre = png[(r0 + r1) // 2, (c0 + c1) // 2].astype(int)
    assert centre[0] > 200 and centre[1] < 100 and centre[2] < 100
    r0, c0, r1, c1 = ellipse
    centre = png[(r0 + r1) // 2, (c0 + c1) // 2].astype(int)
    assert centre[2] > 200 and centre[0] < 100 and centre[1] < 100

    swapped = _read(render_preview(tif, [], tmp_path / "bgr.png", bands=[3, 2, 1]))
    assert np.array_equal(swapped, png[..., ::-1])
    grey = _read(render_preview(tif, [], tmp_path / "grey.png", bands=[1]))
    assert np.array_equal(grey[..., 0], png[..., 0]) and np.array_equal(grey[..., 2], png[..., 0])
    with pytest.raises(UserError, match="bands"):
        render_preview(tif, [], tmp_path / "bad.png", bands=[1, 4, 2])


def _write_gpkg(path: Path, crs: str, records: list[tuple[dict, int, float]]) -> None:
    schema = {"geometry": "Polygon", "properties": {"class_id": "int", "score": "float"}}
    with fiona.open(path, "w", driver="GPKG", schema=schema, crs=FionaCRS.from_user_input(crs)) as dst:
        for geometry, class_id, score in records:
            dst.write(fiona.Feature.from_dict(
                geometry=geometry, properties={"class_id": class_id, "score": score}))


def test_vector_file_input(tmp_path: Path) -> None:
    tif = tmp_path / "scene.tif"
    write_scene_geotiff(tif)
    a, b = (10, 20, 50, 80), (170, 180, 250, 210)
    gpkg = tmp_path / "features.gpkg"
    _write_gpkg(gpkg, "EPSG:32633", [(mapping(_map_box(*a)), 1, 0.91), (mapping(_map_box(*b)), 2, 0.42)])
    png = _read(render_preview(tif, gpkg, tmp_path / "v.png", colours={1: "blue", 2: "lime"}))
    assert np.array_equal(_is(png, BLUE), _ring((256, 256), *a))
    assert np.array_equal(_is(png, GREEN), _ring((256, 256), *b))

    labelled = _read(render_preview(tif, str(gpkg), tmp_path / "l.png", colours={1: "blue", 2: "lime"},
                                    score_labels=True))
    # the label "0.91" is written in the class colour just above the box's top-left corner
    above_a = _is(labelled, BLUE)[: a[0] - 1, a[1] : a[1] + 40]
    assert above_a.sum() > 5
    assert not _is(png, BLUE)[: a[0] - 1, a[1] : a[1] + 40].any()


def test_vector_file_in_other_crs_is_reprojected(tmp_path: Path) -> None:
    tif = tmp_path / "scene.tif"
    write_scene_geotiff(tif)
    # edges a quarter pixel inside the integer positions: robust to reprojection round-off
    r0, c0, r1, c1 = 40.25, 60.25, 100.25, 150.25
    geom = transform_geom("EPSG:32633", "EPSG:4326", mapping(_map_box(r0, c0, r1, c1)))
    gpkg = tmp_path / "wgs84.gpkg"
    _write_gpkg(gpkg, "EPSG:4326", [(geom, 1, 0.5)])
    png = _read(render_preview(tif, gpkg, tmp_path / "w.png"))
    assert np.array_equal(_is(png, RED), _ring((256, 256), 40, 60, 100, 150))


def test_raster_without_crs_uses_pixel_coordinates(tmp_path: Path) -> None:
    tif = tmp_path / "nocrs.tif"
    write_scene_geotiff(tif, height=64, width=64, crs=None,
                        objects=[{"kind": "rect", "box": (10, 10, 30, 40), "class_id": 1}])
    square = (5, 5, 35, 45)
    # identity transform: x = column, y = row
    geom = box(square[1], square[0], square[3], square[2])
    png = _read(render_preview(tif, [(geom, 3, 0.7)], tmp_path / "n.png", colours={3: "#0000ff"}))
    assert png.shape == (64, 64, 3)
    assert np.array_equal(_is(png, BLUE), _ring((64, 64), *square))


def test_stretch_ignores_nodata_and_handles_constant_band() -> None:
    band = np.array([[0, 0, 10, 20], [30, 40, 50, 60]], dtype=np.uint8)
    valid = band != 0
    out = stretch_to_uint8(band, valid, low=0, high=100)
    assert out.tolist() == [[0, 0, 0, 51], [102, 153, 204, 255]]
    assert (stretch_to_uint8(np.full((3, 3), 7.0)) == 128).all()
    assert (stretch_to_uint8(np.full((2, 2), np.nan)) == 0).all()


def test_missing_raster_and_missing_output_folder_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="file not found"):
        render_preview(tmp_path / "nope.tif", [], tmp_path / "x.png")
    tif = tmp_path / "scene.tif"
    write_scene_geotiff(tif, height=32, width=32, objects=[])
    with pytest.raises(UserError, match="does not exist"):
        render_preview(tif, [], tmp_path / "no_such_dir" / "x.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]
