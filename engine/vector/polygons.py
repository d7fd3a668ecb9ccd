"""Raster masks -> valid shapely (Multi)Polygons in map coordinates, and their areas in m^2."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyproj
import rasterio.features
import shapely
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry


def _polygonal_parts(geom: BaseGeometry) -> list[Polygon]:
    """Non-empty Polygons inside ``geom`` (drops points/lines that ``make_valid`` may produce)."""
    if geom.is_empty:
        return []
    if isinstance(geom, Polygon):
        return [geom]
    if hasattr(geom, "geoms"):  # MultiPolygon, GeometryCollection
        return [p for g in geom.geoms for p in _polygonal_parts(g)]
    return []


def _as_polygonal(geom: BaseGeometry) -> Polygon | MultiPolygon | None:
    """``make_valid`` and keep the polygonal parts; None when nothing polygonal is left."""
    parts = _polygonal_parts(shapely.make_valid(geom))
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    out = MultiPolygon(parts)
    if not out.is_valid:  # parts from a GeometryCollection may share edges
        out = shapely.unary_union(parts)
    return out


def mask_to_geometry(
    mask: np.ndarray,
    row_off: int,
    col_off: int,
    transform: Affine,
    simplify_tolerance: float = 0.0,
) -> Polygon | MultiPolygon | None:
    """Polygonise a cropped instance mask into map coordinates.

    ``mask``: bool ``[h, w]``; ``mask[0, 0]`` is raster pixel ``(row_off, col_off)``.
    ``transform``: the raster's pixel -> map affine transform. Pixel edges become polygon edges
    (4-connectivity, holes kept). ``simplify_tolerance`` is in map units (0 = exact pixel outline);
    simplification preserves topology. Returns a valid Polygon or MultiPolygon, or None when the
    mask is empty.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D [h, w], got shape {mask.shape}")
    if not mask.any():
        return None
    # == transform * Affine.translation(col_off, row_off), without affine 3's deprecation warning on `*`
    t = transform
    x0, y0 = t.c + t.a * col_off + t.b * row_off, t.f + t.d * col_off + t.e * row_off
    shifted = Affine(t.a, t.b, x0, t.d, t.e, y0)
    polys = [
        shape(geom)
        for geom, value in rasterio.features.shapes(
            mask.astype(np.uint8), mask=mask, connectivity=4, transform=shifted
        )
        if value == 1
    ]
    geom = _as_polygonal(MultiPolygon(polys) if len(polys) > 1 else polys[0])
    if geom is not None and simplify_tolerance > 0:
        geom = _as_polygonal(geom.simplify(simplify_tolerance, preserve_topology=True))
    return geom


def geometry_area_m2(geom: BaseGeometry, crs: Any) -> float:
    """Area of ``geom`` (in ``crs`` coordinates) in square metres.

    Projected CRS: planar area times the square of the linear unit in metres (feet are handled).
    Geographic CRS: geodesic area on the CRS's ellipsoid (WGS84 if it has none); coordinates are
    (lon, lat) as rasterio/GDAL traditional GIS order gives them. ``crs`` is anything
    ``rasterio.crs.CRS.from_user_input`` takes. Raises ValueError when ``crs`` is None or has no
    linear unit: for pixel-only rasters use :func:`pixel_area_m2`.
    """
    if crs is None:
        raise ValueError("cannot compute area in m^2 without a CRS; use pixel_area_m2 with a known GSD")
    crs = CRS.from_user_input(crs)
    if crs.is_geographic:
        try:
            geod = pyproj.CRS.from_wkt(crs.to_wkt()).get_geod()
        except pyproj.exceptions.CRSError:
            geod = None
        geod = geod or pyproj.Geod(ellps="WGS84")
        area, _ = geod.geometry_area_perimeter(geom)
        return abs(float(area))
    try:
        _, factor = crs.linear_units_factor
    except Exception as exc:  # rasterio raises CRSError for CRSs without a linear unit
        raise ValueError(f"CRS {crs.to_string()!r} has no linear unit; cannot compute m^2") from exc
    return float(geom.area) * float(factor) ** 2


def pixel_area_m2(geom: BaseGeometry, gsd_m: float) -> float:
    """Area in m^2 of ``geom`` given in pixel units (identity transform), pixel side ``gsd_m`` metres."""
    if gsd_m <= 0:
        raise ValueError(f"ground sample distance must be > 0 m, got {gsd_m}")
    return float(geom.area) * gsd_m**2
