"""The test-data generators write what they claim: georeferencing, objects, COCO consistency."""

import json

import numpy as np
import pytest
import rasterio
import rasterio.features
from PIL import Image
from shapely.geometry import Polygon

from tests.data.make_fixtures import main, object_mask, write_coco_dataset, write_scene_geotiff

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


def test_scene_geotiff_georeferencing_and_objects(scene_tif) -> None:
    path, objects = scene_tif
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 32633
        assert (src.transform.c, src.transform.f) == (500000.0, 4000000.0)
        assert src.res == (10.0, 10.0)
        assert (src.count, src.height, src.width, src.dtypes[0]) == (1, 256, 256, "uint8")
        assert src.profile["tiled"] and src.block_shapes[0] == (64, 64)
        img = src.read(1)
    assert len(objects) == 4 and {o["class_id"] for o in objects} == {1, 2}
    fg = np.zeros(img.shape, dtype=bool)
    for obj in objects:
        m = object_mask(obj, 256, 256)
        assert m.any() and img[m].mean() > 180
        r0, c0, r1, c1 = obj["box"]
        rows, cols = np.nonzero(m)  # the mask fills its box
        assert (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1) == (r0, c0, r1, c1)
        fg |= m
    assert img[~fg].mean() < 60


def test_scene_is_deterministic_and_seeded(tmp_path) -> None:
    write_scene_geotiff(tmp_path / "a.tif", height=64, width=48, objects=[])
    write_scene_geotiff(tmp_path / "b.tif", height=64, width=48, objects=[])
    write_scene_geotiff(tmp_path / "c.tif", height=64, width=48, objects=[], seed=1)
    read = [rasterio.open(tmp_path / n).read() for n in ("a.tif", "b.tif", "c.tif")]
    assert np.array_equal(read[0], read[1])
    assert not np.array_equal(read[0], read[2])


def test_scene_variants(tmp_path) -> None:
    objs = [{"kind": "ellipse", "box": (20, 40, 40, 60), "class_id": 1}]
    write_scene_geotiff(tmp_path / "ms.tif", 64, 80, bands=4, dtype="uint16", nodata=0, objects=objs,
                        crs="EPSG:4326", gsd=0.001)
    with rasterio.open(tmp_path / "ms.tif") as src:
        assert (src.count, src.dtypes[0], src.nodata) == (4, "uint16", 0)
        assert src.crs.to_epsg() == 4326 and src.res == (0.001, 0.001)
        img = src.read()
    assert (img[:, :, :10] == 0).all() and (img[:, :, 10:] > 0).all()
    assert img[:, object_mask(objs[0], 64, 80)].mean() > 2000
    write_scene_geotiff(tmp_path / "nocrs.tif", 32, 32, crs=None, objects=[])
    with rasterio.open(tmp_path / "nocrs.tif") as src:
        assert src.crs is None and src.transform.is_identity


def _rasterize(polys, height, width) -> np.ndarray:
    shapes = [(Polygon(np.reshape(p, (-1, 2))), 1) for p in polys]
    return rasterio.features.rasterize(shapes, out_shape=(height, width), dtype="uint8").astype(bool)


@pytest.mark.parametrize("bands, ext", [(1, "png"), (3, "png"), (4, "tif")])
def test_coco_dataset_consistent(tmp_path, bands, ext) -> None:
    json_path = write_coco_dataset(tmp_path / "ds", bands=bands)
    coco = json.loads(json_path.read_text())
    assert [im["id"] for im in coco["images"]] == [0, 1, 2, 3]
    assert [a["id"] for a in coco["annotations"]] == list(range(len(coco["annotations"])))
    assert [(c["id"], c["name"]) for c in coco["categories"]] == [(1, "ship"), (2, "tank")]
    anns = coco["annotations"]
    per_image = {im["id"]: [a for a in anns if a["image_id"] == im["id"]] for im in coco["images"]}
    assert per_image[3] == [] and all(per_image[i] for i in range(3))
    assert sum(len(a["segmentation"]) == 2 for a in coco["annotations"]) == 1
    for im in coco["images"]:
        assert im["file_name"].endswith(ext) and (im["height"], im["width"]) == (96, 128)
        if ext == "png":
            arr = np.asarray(Image.open(json_path.parent / im["file_name"]))
            assert arr.shape == ((96, 128) if bands == 1 else (96, 128, 3))
            arr = arr.reshape(96, 128, -1).mean(axis=2)
        else:
            with rasterio.open(json_path.parent / im["file_name"]) as src:
                assert src.count == bands
                arr = src.read().mean(axis=0)
        fg = np.zeros((96, 128), dtype=bool)
        for ann in per_image[im["id"]]:
            m = _rasterize(ann["segmentation"], 96, 128)
            assert arr[m].mean() > 180  # the polygon lies on bright pixels
            assert ann["area"] == pytest.approx(m.sum(), rel=0.15)
            x, y, w, h = ann["bbox"]
            rows, cols = np.nonzero(m)
            assert abs(cols.min() - x) <= 1 and abs(rows.min() - y) <= 1
            assert abs(cols.max() + 1 - (x + w)) <= 1 and abs(rows.max() + 1 - (y + h)) <= 1
            assert 1 <= ann["category_id"] <= 2 and ann["iscrowd"] == 0
            fg |= m
        # Everything bright is annotated (edge pixels of ellipses may differ by a pixel).
        assert arr[~fg].mean() < 60 and (arr[~fg] > 150).sum() < 0.02 * fg.sum() + 5


def test_coco_deterministic_and_single_class(tmp_path) -> None:
    a = write_coco_dataset(tmp_path / "a", class_names=("ship",)).read_text()
    b = write_coco_dataset(tmp_path / "b", class_names=("ship",)).read_text()
    assert a == b
    assert {ann["category_id"] for ann in json.loads(a)["annotations"]} == {1}
    with pytest.raises(ValueError, match="at least"):
        write_coco_dataset(tmp_path / "c", size=(32, 32))


def test_script_writes_sample_set(tmp_path) -> None:
    assert main([str(tmp_path / "out")]) == 0
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"scene_utm.tif", "coco_gray", "coco_rgb", "coco_4band"} <= names
    assert (tmp_path / "out" / "coco_4band" / "annotations.json").is_file()
    assert main([]) == 2
