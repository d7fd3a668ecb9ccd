"""Input and output of engine.data.chips: polygon layers read in the raster's CRS (class names, skip reasons),
the empty-chip quota, the seeded split, COCO files and the final move of the staged output into place.

Polygon layers are read through fiona (any OGR vector format: GeoPackage, Shapefile,
GeoJSON, ...). A QGIS layer source such as ``ships.gpkg|layername=ships`` names the layer after ``|``.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from shapely import make_valid
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from engine.errors import UserError
from engine.tiling import Tile

NO_GEOMETRY = "no geometry"
NOT_POLYGON = "not a polygon"
NO_CLASS = "no class value"
NOT_REPROJECTED = "cannot be reprojected"


@dataclass(frozen=True)
class PolygonLayer:
    """A polygon layer in a target CRS: kept features and, per reason, how many features were dropped.

    ``geometries[i]`` is a valid Polygon or MultiPolygon in the target CRS (map units of that CRS);
    ``classes[i]`` its class name ("" when the layer was read without a class field).
    """

    path: str
    name: str  # the layer's name (a Shapefile's or GeoJSON's is its file stem)
    fields: tuple[str, ...]
    geometries: tuple[BaseGeometry, ...]
    classes: tuple[str, ...]
    skipped: tuple[tuple[str, int], ...]  # (reason, features), reasons in first-seen order


def split_source(source: str | Path, layer: str | None = None) -> tuple[str, str | None]:
    """``'a.gpkg|layername=x'`` -> ``('a.gpkg', 'x')``; an explicit ``layer`` wins over the suffix."""
    text = str(source)
    path, _, rest = text.partition("|")
    for part in rest.split("|") if rest else ():
        key, _, value = part.partition("=")
        if key.strip().lower() == "layername" and value and layer is None:
            layer = value
    return path, layer


def _class_value(value: Any) -> str:
    """A class attribute -> its name: integral floats lose the '.0', text is stripped; None -> ''."""
    if value is None:
        return ""
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        if value.is_integer():
            return str(int(value))
    return str(value).strip()


def polygonal(geom: BaseGeometry) -> Polygon | MultiPolygon | None:
    """The polygonal part of a geometry, made valid (holes kept), or None when it has no area."""
    if geom.is_empty:
        return None
    if not geom.is_valid:
        geom = make_valid(geom)
    if isinstance(geom, (Polygon, MultiPolygon)):
        return geom if geom.area > 0 else None
    parts = [g for g in getattr(geom, "geoms", ()) if isinstance(g, (Polygon, MultiPolygon)) and g.area > 0]
    if not parts:
        return None
    merged = unary_union(parts)
    return merged if isinstance(merged, (Polygon, MultiPolygon)) and merged.area > 0 else None


def _crs_or_none(crs: Any) -> str | None:
    """fiona's CRS -> WKT, None when the layer has none."""
    if not crs:
        return None
    wkt = crs.to_wkt() if hasattr(crs, "to_wkt") else None
    return wkt or None


def same_crs(a: str, b: str) -> bool:
    """Whether two CRS definitions (WKT, 'EPSG:n', PROJ) denote the same CRS."""
    from rasterio.crs import CRS

    return CRS.from_user_input(a) == CRS.from_user_input(b)


def read_polygon_layer(source: str | Path, to_crs: str | None, class_field: str | None = None,
                       layer: str | None = None, what: str = "polygons", flag: str = "--class-field"
                       ) -> PolygonLayer:
    """Read a polygon layer, reprojected to ``to_crs`` (None: the target has no CRS, so neither may the layer).

    ``class_field``: attribute holding each feature's class (None: every class is ""). ``what`` names
    the input in error messages ("polygons", "--aoi"). Raises UserError for a missing or unreadable
    file, an unknown layer or class field (listing those available) and a CRS mismatch that cannot be
    resolved (a layer without CRS over a raster with one, or the reverse).
    """
    import fiona
    from fiona.errors import DriverError
    from rasterio.warp import transform_geom

    path, layer = split_source(source, layer)
    if not Path(path).exists():
        raise UserError(f"{what} '{path}': file not found; give the path of a polygon layer "
                        "(GeoPackage, Shapefile, GeoJSON)")
    try:
        layers = fiona.listlayers(path)
    except (DriverError, OSError, ValueError) as exc:
        raise UserError(f"{what} '{path}': cannot be read as a vector layer ({str(exc).splitlines()[0][:120]}); "
                        "give a GeoPackage, Shapefile or GeoJSON of polygons") from None
    if layer is not None and layer not in layers:
        raise UserError(f"{what} '{path}': no layer '{layer}'; layers in the file: {', '.join(layers)}")
    try:
        with fiona.open(path, layer=layer) as src:
            name = layer or src.name
            crs = _crs_or_none(src.crs)
            fields = tuple(src.schema["properties"].keys())
            if class_field is not None and class_field not in fields:
                listed = ", ".join(fields) if fields else "none"
                raise UserError(f"{flag} '{class_field}': layer '{name}' of '{path}' has no such field; "
                                f"its fields: {listed}")
            records = list(src)
    except (DriverError, OSError, ValueError) as exc:
        raise UserError(f"{what} '{path}': cannot be read ({str(exc).splitlines()[0][:120]})") from None
    if to_crs is not None and crs is None:
        raise UserError(f"{what} '{path}': the layer has no CRS while the raster has one; set the layer's CRS "
                        "(QGIS: Layer Properties > Source; or ogr2ogr -a_srs EPSG:NNNN) and run again")
    if to_crs is None and crs is not None:
        raise UserError(f"{what} '{path}': the raster has no CRS, so polygons in a CRS cannot be placed on it; "
                        "georeference the raster, or give polygons without CRS in its pixel coordinates")
    reproject = to_crs is not None and crs is not None and not same_crs(crs, to_crs)
    skipped: Counter[str] = Counter()
    geometries: list[BaseGeometry] = []
    classes: list[str] = []
    for rec in records:
        if rec.geometry is None:
            skipped[NO_GEOMETRY] += 1
            continue
        geom = dict(rec.geometry)
        if reproject:
            try:
                geom = transform_geom(crs, to_crs, geom)
            except Exception:  # noqa: BLE001 - GDAL raises several types for points it cannot transform
                skipped[NOT_REPROJECTED] += 1
                continue
        try:
            g = polygonal(shape(geom))
        except (ValueError, TypeError, AttributeError):
            g = None
        if g is None:
            skipped[NOT_POLYGON] += 1
            continue
        klass = ""
        if class_field is not None:
            klass = _class_value(dict(rec.properties).get(class_field))
            if not klass:
                skipped[NO_CLASS] += 1
                continue
        geometries.append(g)
        classes.append(klass)
    return PolygonLayer(path, name, fields, tuple(geometries), tuple(classes), tuple(skipped.items()))


def skipped_text(layer: PolygonLayer) -> str:
    """Why a layer gave no polygon: "3 not a polygon; 1 no geometry", or "the layer is empty"."""
    return "; ".join(f"{n} {reason}" for reason, n in layer.skipped) or "the layer is empty"


def read_area_layer(source: str | Path, to_crs: str | None, what: str) -> PolygonLayer:
    """A layer of area polygons (``what``: "--aoi", "--exclude") in ``to_crs``, as read_polygon_layer reads it;
    UserError naming ``what`` when it holds no polygon (empty, or points and lines only)."""
    layer = read_polygon_layer(source, to_crs, None, what=what)
    if not layer.geometries:
        raise UserError(f"{what} '{layer.path}': holds no polygons ({skipped_text(layer)}); give a polygon layer "
                        "of the area")
    return layer


def empty_quota(object_chips: int, empty_fraction: float, available: int) -> int:
    """Most empty chips such that empty / (object + empty) <= empty_fraction, capped by ``available``."""
    if empty_fraction >= 1.0:
        return available
    return min(available, math.floor(empty_fraction * object_chips / (1.0 - empty_fraction) + 1e-9))


def chip_name(stem: str, t: Tile) -> str:
    """File name of a chip: the raster's stem and the window's top-left pixel (row, column)."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", stem) or "chip"
    return f"{safe}_r{t.row_off:06d}_c{t.col_off:06d}.tif"


def split_val(groups: list[list[Any]], val_fraction: float, seed: int) -> set[int]:
    """``id()`` of the val items: a seeded share ``val_fraction`` of each group (at least 1, never all, of a
    group of 2 or more; none when ``val_fraction`` is 0)."""
    rng = np.random.default_rng([seed, 2])
    val: set[int] = set()
    for group in groups:
        n = len(group)
        n_val = 0 if val_fraction == 0 or n < 2 else min(n - 1, max(1, round(n * val_fraction)))
        val |= {id(group[int(k)]) for k in rng.permutation(n)[:n_val]}
    return val


def coco_file(chips: list[Any], classes: list[str], stem: str, info: dict[str, Any]) -> dict[str, Any]:
    """A COCO instance file of ``chips`` (each with ``tile`` and ``annotations``; image and annotation ids from 1)."""
    images, annotations = [], []
    for image_id, chip in enumerate(chips, start=1):
        t = chip.tile
        images.append({"id": image_id, "file_name": chip_name(stem, t), "height": t.height, "width": t.width,
                       "window": [t.row_off, t.col_off, t.height, t.width]})
        for a in chip.annotations:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": a["category_id"],
                                "segmentation": a["segmentation"], "area": a["area"], "bbox": a["bbox"],
                                "iscrowd": 0})
    categories = [{"id": k + 1, "name": name, "supercategory": "object"} for k, name in enumerate(classes)]
    return {"info": info, "images": images, "annotations": annotations, "categories": categories}


def finalise(staging: Path, out: Path) -> None:
    """Move the staged images folder and COCO files into ``out`` (replacing earlier chips), then tidy up."""
    old = None
    if (out / "images").exists():
        old = out / f".chips-{uuid.uuid4().hex[:8]}.old"
        os.replace(out / "images", old)
    os.replace(staging / "images", out / "images")
    for name in ("all", "train", "val"):
        os.replace(staging / f"{name}.json", out / f"{name}.json")
    staging.rmdir()
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


__all__ = ["PolygonLayer", "chip_name", "coco_file", "empty_quota", "finalise", "polygonal", "read_area_layer",
           "read_polygon_layer", "same_crs", "skipped_text", "split_source", "split_val"]
