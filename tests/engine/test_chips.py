"""Training chips from a raster + polygon layer: masks, clipping, reprojection, empties, split, errors."""
from __future__ import annotations

import json
from pathlib import Path

import fiona
import numpy as np
import pytest
import rasterio
from fiona.crs import CRS as FionaCRS
from pycocotools import mask as mask_utils
from rasterio.warp import transform_geom
from shapely.geometry import LineString, MultiPolygon, Polygon, box, mapping

from engine.data.chip_io import empty_quota
from engine.data.chips import ChipOptions, ChipSummary, make_chips
from engine.data.coco import CocoInstanceDataset
from engine.errors import Cancelled, UserError
from engine.spec import Normalisation
from tests.data.make_fixtures import write_scene_geotiff

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

GSD = 10.0
X0, Y0 = 500000.0, 4000000.0  # top-left corner of write_scene_geotiff's scenes
IDENTITY = Normalisation(scale=1.0 / 255.0, mean=(0.0,), std=(1.0,))


def _map_box(r0: int, c0: int, r1: int, c1: int) -> Polygon:
    """Pixel box (rows r0..r1, cols c0..c1, half-open) -> map polygon on the fixture grid."""
    return box(X0 + c0 * GSD, Y0 - r1 * GSD, X0 + c1 * GSD, Y0 - r0 * GSD)


def _pixel_mask(shape: tuple[int, int], *boxes: tuple[int, int, int, int]) -> np.ndarray:
    m = np.zeros(shape, bool)
    for r0, c0, r1, c1 in boxes:
        m[max(r0, 0):r1, max(c0, 0):c1] = True
    return m


def _write_layer(path: Path, features: list[tuple], crs: str | None = "EPSG:32633",
                 fields: dict[str, str] | None = None) -> Path:
    """features: (shapely geometry or None, properties dict) -> a polygon layer (driver from the extension)."""
    fields = fields if fields is not None else {"kind": "str"}
    driver = {".gpkg": "GPKG", ".geojson": "GeoJSON"}[path.suffix]
    schema = {"geometry": "Unknown", "properties": fields}
    with fiona.open(path, "w", driver=driver, schema=schema, crs=FionaCRS.from_user_input(crs) if crs else None) as dst:
        for geom, props in features:
            dst.write({"geometry": mapping(geom) if geom is not None else None, "properties": props})
    return path


def _scene(tmp_path: Path, **kwargs) -> Path:
    path = tmp_path / kwargs.pop("name", "scene.tif")
    write_scene_geotiff(path, objects=kwargs.pop("objects", []), **kwargs)
    return path


def _coco(out: Path, name: str = "all") -> dict:
    return json.loads((out / f"{name}.json").read_text())


def _masks_by_window(coco: dict) -> dict[tuple[int, int], list[tuple[str, np.ndarray]]]:
    """(row_off, col_off) of each chip -> [(class name, [H,W] bool mask)] of its annotations."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    out: dict[tuple[int, int], list] = {}
    for im in coco["images"]:
        anns = [a for a in coco["annotations"] if a["image_id"] == im["id"]]
        out[tuple(im["window"][:2])] = [(names[a["category_id"]], mask_utils.decode(a["segmentation"]).astype(bool))
                                        for a in anns]
    return out


# --------------------------------------------------------------------------------------- known chips


def test_known_polygons_give_known_chips_and_masks(tmp_path: Path) -> None:
    raster = _scene(tmp_path, height=128, width=128)
    polys = _write_layer(tmp_path / "p.gpkg", [
        (_map_box(10, 10, 30, 40), {"kind": "ship"}),
        (_map_box(70, 80, 90, 100), {"kind": "tank"}),
    ])
    out = tmp_path / "chips"
    summary = make_chips(raster, polys, out, ChipOptions(class_field="kind", tile_size=64, empty_fraction=0.0,
                                                         val_fraction=0.0))
    assert isinstance(summary, ChipSummary)
    assert (summary.chips, summary.empty_chips, summary.classes) == (2, 0, ("ship", "tank"))
    assert dict(summary.instances) == {"ship": 1, "tank": 1}
    coco = _coco(out)
    assert [c["name"] for c in coco["categories"]] == ["ship", "tank"] and coco["categories"][0]["id"] == 1
    assert [im["id"] for im in coco["images"]] == [1, 2] and coco["annotations"][0]["id"] == 1
    masks = _masks_by_window(coco)
    assert set(masks) == {(0, 0), (64, 64)}
    (name, m), = masks[(0, 0)]
    assert name == "ship" and np.array_equal(m, _pixel_mask((64, 64), (10, 10, 30, 40)))
    (name, m), = masks[(64, 64)]
    assert name == "tank" and np.array_equal(m, _pixel_mask((64, 64), (6, 16, 26, 36)))
    ann = coco["annotations"][0]
    assert ann["area"] == 600 and ann["bbox"] == [10, 10, 30, 20] and ann["iscrowd"] == 0
    # the chip holds the raster's raw values, dtype, georeferencing
    im = next(i for i in coco["images"] if i["window"][:2] == [64, 64])
    with rasterio.open(raster) as src, rasterio.open(out / "images" / im["file_name"]) as chip:
        expected = src.read(window=((64, 128), (64, 128)))
        assert chip.dtypes[0] == "uint8" and np.array_equal(chip.read(), expected)
        assert chip.crs == src.crs and chip.transform.c == X0 + 64 * GSD and chip.transform.f == Y0 - 64 * GSD
    assert train_val_names(out) == ({im["file_name"] for im in coco["images"]}, set())
    assert "2 chips (0 empty; 2 train, 0 val) with 2 objects (1 ship, 1 tank)" in str(summary)


def train_val_names(out: Path) -> tuple[set[str], set[str]]:
    return tuple({im["file_name"] for im in _coco(out, name)["images"]} for name in ("train", "val"))


def test_holes_and_multipolygons_are_one_instance_each(tmp_path: Path) -> None:
    raster = _scene(tmp_path, height=64, width=64)
    ring = _map_box(5, 5, 35, 35).difference(_map_box(15, 15, 25, 25))
    parts = MultiPolygon([_map_box(45, 5, 55, 15), _map_box(45, 30, 55, 40)])
    polys = _write_layer(tmp_path / "p.geojson", [(ring, {"kind": "a"}), (parts, {"kind": "a"})])
    out = tmp_path / "chips"
    make_chips(raster, polys, out, ChipOptions(tile_size=64, val_fraction=0.0))
    (_, ring_mask), (_, parts_mask) = _masks_by_window(_coco(out))[(0, 0)]
    assert np.array_equal(ring_mask, _pixel_mask((64, 64), (5, 5, 35, 35)) & ~_pixel_mask((64, 64), (15, 15, 25, 25)))
    assert np.array_equal(parts_mask, _pixel_mask((64, 64), (45, 5, 55, 15), (45, 30, 55, 40)))
    assert [c["name"] for c in _coco(out)["categories"]] == ["p"]  # no class field: the layer's name


def test_polygons_cut_by_a_chip_edge_are_clipped_and_slivers_dropped(tmp_path: Path) -> None:
    raster = _scene(tmp_path, height=64, width=128)
    polys = _write_layer(tmp_path / "p.gpkg", [
        (_map_box(10, 50, 30, 80), {"kind": "ship"}),   # 14 columns left of the edge at 64, 16 right
        (_map_box(40, 63, 50, 70), {"kind": "ship"}),   # 1 column (10 px) left of the edge: a sliver there
        (_map_box(60, 120, 61, 121), {"kind": "ship"}),  # one pixel: dropped everywhere
    ])
    out = tmp_path / "chips"
    summary = make_chips(raster, polys, out, ChipOptions(tile_size=64, min_object_pixels=12, val_fraction=0.0))
    masks = _masks_by_window(_coco(out))
    left, right = masks[(0, 0)], masks[(0, 64)]
    assert len(left) == 1 and np.array_equal(left[0][1], _pixel_mask((64, 64), (10, 50, 30, 64)))
    assert len(right) == 2
    assert np.array_equal(right[0][1], _pixel_mask((64, 64), (10, 0, 30, 16)))
    assert np.array_equal(right[1][1], _pixel_mask((64, 64), (40, 0, 50, 6)))
    assert summary.slivers == 2 and dict(summary.skipped) == {"under 12 pixels in every chip": 1}


def test_polygons_in_epsg4326_are_reprojected_onto_a_utm_raster(tmp_path: Path) -> None:
    raster = _scene(tmp_path, height=64, width=64)
    rect = _map_box(10, 12, 40, 50)
    lonlat = transform_geom("EPSG:32633", "EPSG:4326", mapping(rect))
    polys = tmp_path / "p.geojson"
    with fiona.open(polys, "w", driver="GeoJSON", crs=FionaCRS.from_epsg(4326),
                    schema={"geometry": "Polygon", "properties": {}}) as dst:
        dst.write({"geometry": lonlat, "properties": {}})
    out = tmp_path / "chips"
    make_chips(raster, polys, out, ChipOptions(tile_size=64, val_fraction=0.0))
    (_, m), = _masks_by_window(_coco(out))[(0, 0)]
    expected = _pixel_mask((64, 64), (10, 12, 40, 50))
    assert (m ^ expected).sum() <= 4  # only pixels whose centre is within centimetres of an edge may flip
    assert m.sum() == pytest.approx(expected.sum(), abs=4)


def test_a_geographic_raster_is_cut_on_the_utm_grid_inference_uses(tmp_path: Path) -> None:
    raster = tmp_path / "geo.tif"
    with rasterio.open(raster, "w", driver="GTiff", height=200, width=200, count=1, dtype="uint8", crs="EPSG:4326",
                       transform=rasterio.Affine(0.0001, 0, 15.0, 0, -0.0001, 45.0)) as dst:
        dst.write(np.full((1, 200, 200), 50, np.uint8))
    lonlat = box(15.005, 44.988, 15.008, 44.992)
    polys = tmp_path / "p.gpkg"
    with fiona.open(polys, "w", driver="GPKG", crs=FionaCRS.from_epsg(4326),
                    schema={"geometry": "Polygon", "properties": {}}) as dst:
        dst.write({"geometry": mapping(lonlat), "properties": {}})
    summary = make_chips(raster, polys, tmp_path / "c", ChipOptions(tile_size=256, val_fraction=0.0))
    assert summary.grid.startswith("geographic CRS: processed in UTM (EPSG:32633)")
    (ann,) = _coco(tmp_path / "c")["annotations"]
    name = _coco(tmp_path / "c")["images"][0]["file_name"]
    with rasterio.open(tmp_path / "c" / "images" / name) as chip:
        assert chip.crs.to_epsg() == 32633
        area_m2 = Polygon(transform_geom("EPSG:4326", "EPSG:32633", mapping(lonlat))["coordinates"][0]).area
        assert ann["area"] * abs(chip.transform.a * chip.transform.e) == pytest.approx(area_m2, rel=0.05)


# ------------------------------------------------------------------------------- empties and split


def _grid_scene(tmp_path: Path, n_objects: int = 6) -> tuple[Path, Path]:
    """256 x 256 raster, 32-px chips (64 of them), one object in each of the first n chips of row 0 and 4."""
    raster = _scene(tmp_path, height=256, width=256)
    feats = [(_map_box(r * 32 + 4, c * 32 + 4, r * 32 + 20, c * 32 + 20), {"kind": "ship"})
             for k in range(n_objects) for r, c in [(0 if k < 4 else 4, k % 4)]]
    return raster, _write_layer(tmp_path / "p.gpkg", feats)


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 1.0])
def test_empty_chip_fraction_is_an_upper_bound(tmp_path: Path, fraction: float) -> None:
    raster, polys = _grid_scene(tmp_path)
    out = tmp_path / "chips"
    summary = make_chips(raster, polys, out, ChipOptions(tile_size=32, empty_fraction=fraction))
    coco = _coco(out)
    with_objects = {a["image_id"] for a in coco["annotations"]}
    empty = len(coco["images"]) - len(with_objects)
    assert len(with_objects) == 6 and empty == summary.empty_chips
    assert empty == empty_quota(6, fraction, 64 - 6)
    assert empty / len(coco["images"]) <= fraction
    assert len(list((out / "images").iterdir())) == len(coco["images"])


def test_empty_quota() -> None:
    assert [empty_quota(6, f, 100) for f in (0.0, 0.25, 0.5, 0.75)] == [0, 2, 6, 18]
    assert empty_quota(6, 1.0, 58) == 58 and empty_quota(6, 0.75, 5) == 5


def test_split_and_empty_choice_are_seeded(tmp_path: Path) -> None:
    raster, polys = _grid_scene(tmp_path)
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1), ("d", 2), ("e", 3)):
        make_chips(raster, polys, tmp_path / name, ChipOptions(tile_size=32, empty_fraction=0.5, val_fraction=0.25,
                                                               seed=seed))
        runs[name] = train_val_names(tmp_path / name)
    assert runs["a"] == runs["b"]
    assert len({json.dumps([sorted(s) for s in r]) for r in runs.values()}) > 2  # the seed changes the draw
    train, val = runs["a"]
    all_names = {im["file_name"] for im in _coco(tmp_path / "a")["images"]}
    assert not train & val and train | val == all_names and len(all_names) == 12
    val_coco = _coco(tmp_path / "a", "val")
    assert len(val) == 4  # round(6 * 0.25) = 2 of the 6 object chips and 2 of the 6 empty ones
    assert [im["id"] for im in val_coco["images"]] == [1, 2, 3, 4]
    assert sum(1 for im in val_coco["images"] if any(a["image_id"] == im["id"] for a in val_coco["annotations"])) == 2


# --------------------------------------------------------------------------- loading and bands


def test_coco_files_load_as_a_dataset_with_the_expected_masks(tmp_path: Path) -> None:
    raster = _scene(tmp_path, height=64, width=128)
    polys = _write_layer(tmp_path / "p.gpkg", [
        (_map_box(5, 5, 20, 30), {"kind": "tank"}),
        (_map_box(30, 70, 50, 120), {"kind": "ship"}),
        (_map_box(40, 10, 60, 20), {"kind": "ship"}),
    ])
    out = tmp_path / "chips"
    make_chips(raster, polys, out, ChipOptions(class_field="kind", tile_size=64, val_fraction=0.0))
    ds = CocoInstanceDataset(out / "train.json", out / "images", IDENTITY)
    assert ds.class_names == ["ship", "tank"] and len(ds) == 2
    by_col = {ds.index.images[i]["window"][1]: ds[i] for i in range(len(ds))}
    image, target = by_col[0]
    assert image.shape == (1, 64, 64)
    assert sorted(target["labels"].tolist()) == [1, 2]
    expected = {2: _pixel_mask((64, 64), (5, 5, 20, 30)), 1: _pixel_mask((64, 64), (40, 10, 60, 20))}
    for label, mask in zip(target["labels"].tolist(), target["masks"].numpy()):
        assert np.array_equal(mask.astype(bool), expected[label])
    image, target = by_col[64]
    assert target["labels"].tolist() == [1]
    assert np.array_equal(target["masks"][0].numpy().astype(bool), _pixel_mask((64, 64), (30, 6, 50, 56)))
    assert target["boxes"][0].tolist() == [6.0, 30.0, 56.0, 50.0]
    with rasterio.open(raster) as src:
        np.testing.assert_allclose(image.numpy(), src.read(window=((0, 64), (64, 128))) / 255.0, atol=1e-6)


def test_band_repetition_and_selection(tmp_path: Path) -> None:
    gray = _scene(tmp_path, name="gray.tif", height=64, width=64)
    polys = _write_layer(tmp_path / "p.gpkg", [(_map_box(5, 5, 20, 30), {"kind": "ship"})])
    make_chips(gray, polys, tmp_path / "rgb", ChipOptions(tile_size=64, bands=(1, 1, 1), val_fraction=0.0))
    name = _coco(tmp_path / "rgb")["images"][0]["file_name"]
    with rasterio.open(tmp_path / "rgb" / "images" / name) as chip, rasterio.open(gray) as src:
        pixels = chip.read()
        assert pixels.shape == (3, 64, 64) and all(np.array_equal(p, src.read(1)) for p in pixels)
    four = _scene(tmp_path, name="four.tif", height=64, width=64, bands=4, dtype="uint16", nodata=0)
    make_chips(four, polys, tmp_path / "sel", ChipOptions(tile_size=64, bands=(4, 2), val_fraction=0.0))
    with rasterio.open(tmp_path / "sel" / "images" / name.replace("gray", "four")) as chip, rasterio.open(four) as src:
        assert chip.dtypes[0] == "uint16" and chip.nodata == 0
        assert np.array_equal(chip.read(), src.read([4, 2]))


# ----------------------------------------------------------------------- areas, nodata, no CRS


def test_aoi_and_extent_limit_the_chips(tmp_path: Path) -> None:
    raster, polys = _grid_scene(tmp_path)
    aoi = _write_layer(tmp_path / "aoi.gpkg", [(_map_box(0, 0, 20, 40), {"kind": "x"})])
    summary = make_chips(raster, polys, tmp_path / "aoi", ChipOptions(tile_size=32, aoi=str(aoi), empty_fraction=0))
    windows = sorted(tuple(im["window"][:2]) for im in _coco(tmp_path / "aoi")["images"])
    assert windows == [(0, 0), (0, 32)]
    assert dict(summary.skipped) == {"outside --aoi": 4}
    extent = (X0, Y0 - 160 * GSD, X0 + 64 * GSD, Y0 - 128 * GSD)  # rows 128..160, cols 0..64
    make_chips(raster, polys, tmp_path / "ext", ChipOptions(tile_size=32, extent=extent, empty_fraction=0))
    windows = sorted(tuple(im["window"][:2]) for im in _coco(tmp_path / "ext")["images"])
    assert windows == [(128, 0), (128, 32)]


def test_all_nodata_chips_are_not_written(tmp_path: Path) -> None:
    raster = _scene(tmp_path, height=64, width=256, nodata=0)  # columns 0..31 are nodata
    polys = _write_layer(tmp_path / "p.gpkg", [(_map_box(5, 5, 20, 25), {"kind": "a"}),
                                               (_map_box(5, 40, 20, 60), {"kind": "a"})])
    summary = make_chips(raster, polys, tmp_path / "c", ChipOptions(tile_size=32, empty_fraction=1.0))
    windows = {tuple(im["window"][:2]) for im in _coco(tmp_path / "c")["images"]}
    assert (0, 0) not in windows and (32, 0) not in windows and (0, 32) in windows and len(windows) == 14
    assert summary.nodata_chips == 2 and dict(summary.skipped) == {"only over nodata": 1}


def test_raster_without_crs_takes_pixel_polygons_in_either_y_convention(tmp_path: Path) -> None:
    raster = _scene(tmp_path, height=64, width=64, crs=None)
    down = _write_layer(tmp_path / "down.gpkg", [(box(10, 5, 30, 15), {"kind": "a"})], crs=None)
    up = _write_layer(tmp_path / "up.gpkg", [(box(10, -15, 30, -5), {"kind": "a"})], crs=None)  # QGIS: y = -row
    for name, layer in (("d", down), ("u", up)):
        make_chips(raster, layer, tmp_path / name, ChipOptions(tile_size=64, val_fraction=0.0))
        (_, m), = _masks_by_window(_coco(tmp_path / name))[(0, 0)]
        assert np.array_equal(m, _pixel_mask((64, 64), (5, 10, 15, 30))), name


# ------------------------------------------------------------------------- progress and cancel


def test_progress_reaches_total_and_cancel_leaves_nothing(tmp_path: Path) -> None:
    raster, polys = _grid_scene(tmp_path)
    calls: list[tuple[int, int]] = []
    make_chips(raster, polys, tmp_path / "ok", ChipOptions(tile_size=32), progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (7, 7) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    out = tmp_path / "cancelled"
    polls = iter(range(1000))  # 64 + 64 polls while planning, then one per chip: cancel at the third chip
    with pytest.raises(Cancelled):
        make_chips(raster, polys, out, ChipOptions(tile_size=32), cancelled=lambda: next(polls) > 130)
    assert out.is_dir() and list(out.iterdir()) == []  # no COCO file, no images, no temporary folder


def test_overwrite_replaces_earlier_chips(tmp_path: Path) -> None:
    raster, polys = _grid_scene(tmp_path)
    out = tmp_path / "c"
    make_chips(raster, polys, out, ChipOptions(tile_size=32, empty_fraction=0.5))
    with pytest.raises(UserError, match="already holds chips .*--overwrite"):
        make_chips(raster, polys, out, ChipOptions(tile_size=64))
    make_chips(raster, polys, out, ChipOptions(tile_size=64, empty_fraction=0, overwrite=True))
    names = {p.name for p in (out / "images").iterdir()}
    assert names == {im["file_name"] for im in _coco(out)["images"]} and len(names) == 3
    assert sorted(p.name for p in out.iterdir()) == ["all.json", "images", "train.json", "val.json"]


# ----------------------------------------------------------------------------------- classes, errors


def test_classes_fix_the_order_and_refuse_others(tmp_path: Path) -> None:
    raster = _scene(tmp_path, height=64, width=64)
    polys = _write_layer(tmp_path / "p.gpkg", [(_map_box(5, 5, 20, 25), {"kind": "ship"}),
                                               (_map_box(30, 5, 50, 25), {"kind": "boat"}),
                                               (_map_box(30, 40, 50, 60), {"kind": None})])
    out = tmp_path / "a"
    summary = make_chips(raster, polys, out, ChipOptions(class_field="kind", classes=("tank", "ship", "boat"),
                                                         tile_size=64, val_fraction=0.0))
    assert [c["name"] for c in _coco(out)["categories"]] == ["tank", "ship", "boat"]
    assert dict(summary.instances) == {"tank": 0, "ship": 1, "boat": 1} and dict(summary.skipped) == {
        "no class value": 1}
    with pytest.raises(UserError, match=r"--classes ship: .* also holds boat; add them to --classes"):
        make_chips(raster, polys, tmp_path / "b", ChipOptions(class_field="kind", classes=("ship",), tile_size=64))
    make_chips(raster, polys, tmp_path / "c", ChipOptions(classes=("vessel",), tile_size=64, val_fraction=0.0))
    assert [c["name"] for c in _coco(tmp_path / "c")["categories"]] == ["vessel"]


@pytest.mark.parametrize(("case", "message"), [
    ("missing raster", r"raster '.*nope.tif': file not found"),
    ("missing polygons", r"polygons '.*nope.gpkg': file not found"),
    ("unknown field", r"--class-field 'type': layer 'p' of .* has no such field; its fields: kind"),
    ("bands", r"--bands 1,2: raster .* has bands 1..1"),
    ("outside", r"none of its 1 polygons lies inside the raster of '.*scene.tif'"),
    ("no crs", r"polygons '.*nocrs.gpkg': the layer has no CRS while the raster has one"),
    ("overlap", r"--overlap 64: give 0 to 63 pixels"),
    ("empty fraction", r"--empty-fraction 1.5: give a fraction between 0 and 1"),
    ("extent", r"--extent .*: does not overlap raster"),
    ("several classes", r"--classes a,b: several classes need --class-field"),
    ("output is input", r"--out .*: would overwrite the input"),
    ("only slivers", r"no polygon covers 4 or more pixels of a chip"),
    ("no usable polygon", r"polygons '.*lines.gpkg': holds no usable polygon \(1 not a polygon; 1 no class value\)"),
])
def test_user_errors_are_one_line(tmp_path: Path, case: str, message: str) -> None:
    raster = _scene(tmp_path, height=64, width=64)
    polys = _write_layer(tmp_path / "p.gpkg", [(_map_box(5, 5, 20, 25), {"kind": "ship"})])
    out, options = tmp_path / "out", ChipOptions(tile_size=64)
    if case == "missing raster":
        raster = tmp_path / "nope.tif"
    elif case == "missing polygons":
        polys = tmp_path / "nope.gpkg"
    elif case == "unknown field":
        options = ChipOptions(class_field="type")
    elif case == "bands":
        options = ChipOptions(bands=(1, 2))
    elif case == "outside":
        polys = _write_layer(tmp_path / "far.gpkg", [(_map_box(500, 500, 520, 520), {"kind": "ship"})])
    elif case == "no crs":
        polys = _write_layer(tmp_path / "nocrs.gpkg", [(box(0, 0, 1, 1), {"kind": "ship"})], crs=None)
    elif case == "overlap":
        options = ChipOptions(tile_size=64, overlap=64)
    elif case == "empty fraction":
        options = ChipOptions(empty_fraction=1.5)
    elif case == "extent":
        options = ChipOptions(extent=(0.0, 0.0, 10.0, 10.0))
    elif case == "several classes":
        options = ChipOptions(classes=("a", "b"))
    elif case == "no usable polygon":
        polys = _write_layer(tmp_path / "lines.gpkg", [(LineString([(X0, Y0), (X0 + 50, Y0 - 50)]), {"kind": "a"}),
                                                       (_map_box(5, 5, 20, 25), {"kind": None})])
        options = ChipOptions(class_field="kind")
    elif case == "only slivers":
        polys = _write_layer(tmp_path / "tiny.gpkg", [(_map_box(5, 5, 6, 7), {"kind": "ship"})])
    elif case == "output is input":
        out = tmp_path
        (tmp_path / "images").mkdir()
        raster = _scene(tmp_path / "images", height=64, width=64)
    with pytest.raises(UserError, match=message) as err:
        make_chips(raster, polys, out, options)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()  # nothing written, not even the folder
