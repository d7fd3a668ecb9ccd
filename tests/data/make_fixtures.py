"""Tiny deterministic test data: georeferenced scenes and COCO datasets with known objects.

Import the functions in tests (write into pytest's ``tmp_path``), or run
``python tests/data/make_fixtures.py OUTDIR`` to write a sample set to look at.

Objects are dicts ``{"kind": "rect" | "ellipse", "box": (row0, col0, row1, col1), "class_id": int}``
in pixel coordinates, half-open. A pixel belongs to an ellipse when its centre lies inside it.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning

Obj = dict[str, Any]

DEFAULT_SCENE_OBJECTS: tuple[Obj, ...] = (
    {"kind": "rect", "box": (20, 30, 36, 70), "class_id": 1},
    {"kind": "ellipse", "box": (100, 100, 156, 140), "class_id": 1},  # spans the 128-px tile corner
    {"kind": "ellipse", "box": (200, 40, 220, 60), "class_id": 2},
    {"kind": "rect", "box": (180, 190, 240, 200), "class_id": 2},
)
_BRIGHT = {"uint8": 220, "uint16": 3000, "int16": 3000, "float32": 0.8}
_DARK = {"uint8": (30, 8), "uint16": (300, 60), "int16": (300, 60), "float32": (0.1, 0.02)}


def object_mask(obj: Obj, height: int, width: int) -> np.ndarray:
    """Bool ``[height, width]`` mask of one object."""
    r0, c0, r1, c1 = obj["box"]
    mask = np.zeros((height, width), dtype=bool)
    if obj["kind"] == "rect":
        mask[max(r0, 0) : r1, max(c0, 0) : c1] = True
        return mask
    if obj["kind"] != "ellipse":
        raise ValueError(f"unknown object kind {obj['kind']!r}; use 'rect' or 'ellipse'")
    cy, cx, ry, rx = (r0 + r1) / 2, (c0 + c1) / 2, (r1 - r0) / 2, (c1 - c0) / 2
    rr, cc = np.mgrid[0:height, 0:width] + 0.5
    return ((rr - cy) / ry) ** 2 + ((cc - cx) / rx) ** 2 <= 1.0


def object_polygon(obj: Obj, n_vertices: int = 32) -> list[float]:
    """COCO polygon ``[x0, y0, x1, y1, ...]`` (x = column, y = row, pixel edges) of one object."""
    r0, c0, r1, c1 = obj["box"]
    if obj["kind"] == "rect":
        return [float(v) for v in (c0, r0, c1, r0, c1, r1, c0, r1)]
    t = np.linspace(0.0, 2 * np.pi, n_vertices, endpoint=False)
    xs = (c0 + c1) / 2 + (c1 - c0) / 2 * np.cos(t)
    ys = (r0 + r1) / 2 + (r1 - r0) / 2 * np.sin(t)
    return [round(float(v), 2) for xy in zip(xs, ys) for v in xy]


def _render(rs: np.random.RandomState, height: int, width: int, bands: int, dtype: str,
            objects: list[Obj]) -> np.ndarray:
    """``[bands, height, width]`` image: dark speckled background, bright objects."""
    if dtype not in _DARK:
        raise ValueError(f"dtype {dtype!r} not supported; use one of {sorted(_DARK)}")
    mean, std = _DARK[dtype]
    img = rs.normal(mean, std, size=(bands, height, width))
    fg = np.zeros((height, width), dtype=bool)
    for obj in objects:
        fg |= object_mask(obj, height, width)
    img[:, fg] = _BRIGHT[dtype] + rs.normal(0, std, size=(bands, int(fg.sum())))
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        img = np.clip(np.rint(img), max(info.min, 1), info.max)  # 0 stays free for nodata
    return img.astype(dtype)


def write_scene_geotiff(
    path: str | Path,
    height: int = 256,
    width: int = 256,
    bands: int = 1,
    dtype: str = "uint8",
    crs: str | None = "EPSG:32633",
    gsd: float = 10.0,
    objects: list[Obj] | None = None,
    nodata: float | None = None,
    seed: int = 0,
) -> list[Obj]:
    """Write a tiled GeoTIFF scene ``[bands, height, width]`` and return its objects.

    Top-left corner at map (500000, 4000000) with ``gsd`` map units per pixel (for a geographic
    ``crs`` pass a gsd in degrees). ``crs=None`` writes a raster without CRS or geotransform.
    With ``nodata`` set, the left eighth of the columns (at least one) is filled with it; objects
    are drawn first, so keep them out of that strip.
    """
    objects = [dict(o) for o in (DEFAULT_SCENE_OBJECTS if objects is None else objects)]
    rs = np.random.RandomState(seed)
    img = _render(rs, height, width, bands, dtype, objects)
    if nodata is not None:
        img[:, :, : max(1, width // 8)] = nodata
    profile: dict[str, Any] = {
        "driver": "GTiff", "height": height, "width": width, "count": bands, "dtype": dtype,
        "nodata": nodata, "compress": "deflate",
    }
    if height >= 16 and width >= 16:
        profile.update(tiled=True, blockxsize=64, blockysize=64)
    if crs is not None:
        profile.update(crs=crs, transform=Affine(gsd, 0.0, 500000.0, 0.0, -gsd, 4000000.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(img)
    return objects


def write_scene_polygons(path: str | Path, objects: list[Obj] | None = None, class_names: tuple[str, ...] = ("ship",
                         "tank"), gsd: float = 10.0, crs: str = "EPSG:32633", class_field: str = "class_name",
                         ) -> Path:
    """Write the objects of a ``write_scene_geotiff`` scene (same ``gsd`` and ``crs``) as a polygon layer
    (driver from the extension: .gpkg, .geojson, .shp), each with its class name in ``class_field``."""
    import fiona
    from fiona.crs import CRS as FionaCRS

    objects = [dict(o) for o in (DEFAULT_SCENE_OBJECTS if objects is None else objects)]
    driver = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".shp": "ESRI Shapefile"}[Path(path).suffix]
    schema = {"geometry": "Polygon", "properties": {class_field: "str"}}
    with fiona.open(path, "w", driver=driver, schema=schema, crs=FionaCRS.from_user_input(crs)) as dst:
        for obj in objects:
            xy = object_polygon(obj)
            ring = [(500000.0 + x * gsd, 4000000.0 - y * gsd) for x, y in zip(xy[::2], xy[1::2])]
            dst.write({"geometry": {"type": "Polygon", "coordinates": [ring + ring[:1]]},
                       "properties": {class_field: class_names[obj["class_id"] - 1]}})
    return Path(path)


def _coco_objects(rs: np.random.RandomState, height: int, width: int, n_classes: int,
                  free_corner: bool) -> list[Obj]:
    """2-3 non-overlapping objects on a 3 x 3 grid of cells, random size/kind/class.

    ``free_corner`` keeps the bottom-left cell empty (for the two-piece instance of image 0).
    """
    cells = [c for c in rs.permutation(9) if not (free_corner and c == 6)][: rs.randint(2, 4)]
    ch, cw = height // 3, width // 3
    objs = []
    for cell in cells:
        r, c = divmod(int(cell), 3)
        h, w = rs.randint(ch // 3, ch - 2), rs.randint(cw // 3, cw - 2)
        r0, c0 = r * ch + rs.randint(1, ch - h), c * cw + rs.randint(1, cw - w)
        kind = "rect" if rs.rand() < 0.5 else "ellipse"
        class_id = int(rs.randint(1, n_classes + 1))
        objs.append({"kind": kind, "box": (r0, c0, r0 + h, c0 + w), "class_id": class_id})
    return objs


def _bbox_area(polys: list[list[float]]) -> tuple[list[float], float]:
    """COCO ``[x, y, w, h]`` and shoelace area over the polygons of one instance."""
    xs = np.concatenate([p[0::2] for p in polys])
    ys = np.concatenate([p[1::2] for p in polys])
    area = 0.0
    for p in polys:
        x, y = np.asarray(p[0::2]), np.asarray(p[1::2])
        area += 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    bbox = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min()), float(ys.max() - ys.min())]
    return bbox, area


def write_coco_dataset(
    directory: str | Path,
    n_images: int = 4,
    size: tuple[int, int] = (96, 128),
    bands: int = 1,
    seed: int = 0,
    class_names: tuple[str, ...] = ("ship", "tank"),
    dtype: str = "uint8",
) -> Path:
    """Write images and ``annotations.json`` (COCO, polygon segmentation) into ``directory``.

    ``size`` is ``(height, width)``. Images are PNG for 1 or 3 bands, GeoTIFF otherwise (no CRS).
    Image ids and annotation ids start at 0, category ids at 1 (``class_names`` in order).
    Image 0 holds one instance made of two polygons (a multi-polygon object, first category);
    the last image (if ``n_images >= 2``) has no objects. Returns the path of the json file.
    """
    height, width = size
    if height < 48 or width < 48:
        raise ValueError(f"COCO fixture size must be at least (48, 48), got {size}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rs = np.random.RandomState(seed)
    images, annotations = [], []
    for image_id in range(n_images):
        empty = n_images >= 2 and image_id == n_images - 1
        objs = [] if empty else _coco_objects(rs, height, width, len(class_names), image_id == 0)
        instances = [[o] for o in objs]
        if image_id == 0:  # one object in two pieces (e.g. a ship split by a crane's shadow)
            halves = [{"kind": "rect", "box": (height - 14, 4, height - 4, 14), "class_id": 1},
                      {"kind": "rect", "box": (height - 14, 17, height - 4, 30), "class_id": 1}]
            instances.append(halves)
            objs = objs + halves
        img = _render(rs, height, width, bands, dtype, objs)
        ext = "png" if bands in (1, 3) and dtype == "uint8" else "tif"
        name = f"img_{image_id:03d}.{ext}"
        if ext == "png":
            Image.fromarray(img[0] if bands == 1 else np.moveaxis(img, 0, -1)).save(directory / name)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(directory / name, "w", driver="GTiff", height=height, width=width,
                                   count=bands, dtype=dtype, compress="deflate") as dst:
                    dst.write(img)
        images.append({"id": image_id, "file_name": name, "height": height, "width": width})
        for parts in instances:
            polys = [object_polygon(o) for o in parts]
            bbox, area = _bbox_area(polys)
            annotations.append({
                "id": len(annotations), "image_id": image_id, "category_id": parts[0]["class_id"],
                "segmentation": polys, "area": area, "bbox": bbox, "iscrowd": 0,
            })
    coco = {
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i + 1, "name": n, "supercategory": "object"} for i, n in enumerate(class_names)
        ],
    }
    out = directory / "annotations.json"
    out.write_text(json.dumps(coco, indent=1))
    return out


def main(argv: list[str]) -> int:
    """``make_fixtures.py OUTDIR``: write a scene (UTM, with nodata) and three COCO datasets."""
    if len(argv) != 1:
        print("usage: python tests/data/make_fixtures.py OUTDIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    write_scene_geotiff(out / "scene_utm.tif")
    write_scene_geotiff(out / "scene_rgb_nodata.tif", bands=3, nodata=0,
                        objects=[o for o in DEFAULT_SCENE_OBJECTS if o["box"][1] >= 32])
    write_scene_geotiff(out / "scene_nocrs.tif", height=64, width=64, crs=None,
                        objects=[{"kind": "rect", "box": (10, 10, 30, 40), "class_id": 1}])
    write_coco_dataset(out / "coco_gray", class_names=("ship",))
    write_coco_dataset(out / "coco_rgb", bands=3)
    write_coco_dataset(out / "coco_4band", bands=4, dtype="uint16")
    print(f"fixtures written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
