"""Quick-look PNG of a raster with polygon outlines drawn on it (no QGIS, no torch).

The raster is read downsampled (rasterio ``out_shape``, average resampling, overviews used when
present) so that its longer side is at most ``max_size`` pixels, stretched to 8 bit (2-98 percentile
per band, nodata and non-finite values ignored and shown black), and the features' outlines
(exteriors and holes) are drawn in their class colour.

Coordinates: a map coordinate goes to a continuous pixel position through the inverse of the
(scaled) raster transform, pixel edges at integers. An outline of width ``w`` covers, across each
edge, the ``w`` pixels nearest to it: for ``w = 2`` an edge at the integer pixel position ``c``
colours pixels ``c - 1`` and ``c`` (one either side). Rasters without a CRS or geotransform use
rasterio's identity transform, so their features are given in pixel coordinates (x = column,
y = row).
"""

from __future__ import annotations

import math
import os
import uuid
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from affine import Affine
from PIL import Image, ImageColor, ImageDraw, ImageFont
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

from engine.errors import UserError

DEFAULT_COLOUR = "red"
LOW_PERCENTILE = 2.0
HIGH_PERCENTILE = 98.0

Feature = tuple[BaseGeometry, int, float | None]


def stretch_to_uint8(band: np.ndarray, valid: np.ndarray | None = None,
                     low: float = LOW_PERCENTILE, high: float = HIGH_PERCENTILE) -> np.ndarray:
    """``[H, W]`` values -> uint8 by a linear stretch between the ``low``/``high`` percentiles.

    Percentiles (numpy's linear interpolation) are taken over the ``valid`` finite pixels only;
    invalid pixels become 0. A band with one value everywhere becomes mid-grey (128).
    """
    data = band.astype(np.float64, copy=False)
    ok = np.isfinite(data)
    if valid is not None:
        ok &= valid
    out = np.zeros(data.shape, dtype=np.uint8)
    if not ok.any():
        return out
    lo, hi = np.percentile(data[ok], [low, high])
    if hi <= lo:
        out[ok] = 128
        return out
    scaled = np.clip((data - lo) * (255.0 / (hi - lo)), 0.0, 255.0)
    out[ok] = np.rint(scaled[ok]).astype(np.uint8)
    return out


def _read_display(src: Any, bands: list[int], max_size: int) -> tuple[np.ndarray, Affine]:
    """``[H', W', 3]`` uint8 display image and the transform of its pixels."""
    height, width = src.height, src.width
    factor = max(height, width) / float(max_size)
    if factor > 1.0:
        out_h, out_w = max(1, round(height / factor)), max(1, round(width / factor))
    else:
        out_h, out_w = height, width
    try:
        data = src.read(bands, out_shape=(len(bands), out_h, out_w), resampling=Resampling.average,
                        masked=True)
    except RasterioIOError as exc:
        raise UserError(f"raster '{src.name}': read failed ({str(exc).splitlines()[0][:150]})") from None
    valid = ~np.ma.getmaskarray(data)
    values = np.ma.getdata(data)
    planes = [stretch_to_uint8(values[i], valid[i]) for i in range(len(bands))]
    if len(planes) == 1:
        planes = planes * 3
    rgb = np.stack(planes, axis=-1)
    sx, sy = width / out_w, height / out_h  # composed by hand: affine's `*` is deprecated for `@`
    t = src.transform
    transform = Affine(t.a * sx, t.b * sy, t.c, t.d * sx, t.e * sy, t.f)
    return rgb, transform


def _choose_bands(count: int, bands: Iterable[int] | None, path: Any) -> list[int]:
    if bands is None:
        return [1, 2, 3] if count >= 3 else [1]
    chosen = [int(b) for b in bands]
    if len(chosen) not in (1, 3):
        raise UserError(f"raster '{path}': bands={chosen}: give 1 band (grey) or 3 bands (RGB)")
    bad = [b for b in chosen if not 1 <= b <= count]
    if bad:
        raise UserError(f"raster '{path}': bands={chosen}: the raster has bands 1..{count}")
    return chosen


def _read_vector(path: Path, raster_crs: Any) -> list[Feature]:
    """Features of a vector file, reprojected to the raster CRS when both CRSs are known."""
    import fiona
    from fiona.errors import FionaError
    from fiona.transform import transform_geom

    if not path.exists():
        raise UserError(f"vector '{path}': file not found")
    try:
        with fiona.open(path) as src:
            src_crs = src.crs
            records = [(f.geometry, dict(f.properties or {})) for f in src]
    except FionaError as exc:
        raise UserError(f"vector '{path}': not a readable vector file ({str(exc)[:150]})") from None
    reproject = bool(src_crs) and raster_crs is not None and CRS.from_wkt(src_crs.to_wkt()) != raster_crs
    features: list[Feature] = []
    for geometry, props in records:
        if geometry is None:
            continue
        geom_dict = dict(geometry.__geo_interface__) if hasattr(geometry, "__geo_interface__") else geometry
        if reproject:
            geom_dict = transform_geom(src_crs, raster_crs.to_wkt(), geom_dict)
        class_id = props.get("class_id")
        score = props.get("score")
        features.append((shape(geom_dict), 0 if class_id is None else int(class_id),
                         None if score is None else float(score)))
    return features


def _lines(geom: BaseGeometry) -> list[np.ndarray]:
    """Coordinate arrays of every outline: polygon exteriors and holes, lines as they are."""
    if geom.is_empty:
        return []
    kind = geom.geom_type
    if kind == "Polygon":
        return [np.asarray(geom.exterior.coords)] + [np.asarray(r.coords) for r in geom.interiors]
    if kind in ("LineString", "LinearRing"):
        return [np.asarray(geom.coords)]
    if hasattr(geom, "geoms"):
        return [arr for part in geom.geoms for arr in _lines(part)]
    return []


def _points(geom: BaseGeometry) -> list[tuple[float, float]]:
    if geom.geom_type == "Point" and not geom.is_empty:
        return [(geom.x, geom.y)]
    if geom.geom_type in ("MultiPoint", "GeometryCollection"):
        return [p for part in geom.geoms for p in _points(part)]
    return []


def _to_pixels(coords: np.ndarray, inverse: Affine) -> np.ndarray:
    a, b, c, d, e, f = inverse.a, inverse.b, inverse.c, inverse.d, inverse.e, inverse.f
    x, y = coords[:, 0], coords[:, 1]
    return np.column_stack([a * x + b * y + c, d * x + e * y + f])


def _draw_line(draw: ImageDraw.ImageDraw, pix: np.ndarray, colour: tuple[int, int, int],
               width: int, view: BaseGeometry) -> None:
    """Draw a polyline in continuous pixel coordinates with a square ``width`` x ``width`` brush."""
    line = shapely.LineString(pix)
    if not line.intersects(view):
        return
    if not view.contains(line):  # keep far-away vertices out of PIL's integer rasteriser
        line = line.intersection(view)
    offsets = [k - (width - 1) / 2.0 for k in range(width)]
    for part in _lines(line):
        if len(part) < 2:
            continue
        for dx in offsets:
            for dy in offsets:
                xy = np.floor(part + (dx, dy)).astype(np.int64)
                draw.line([tuple(p) for p in xy.tolist()], fill=colour, width=1)


def render_preview(
    raster_path: str | os.PathLike,
    features: Iterable[Feature] | str | os.PathLike,
    out_png: str | os.PathLike,
    max_size: int = 1600,
    colours: dict[int, str] | None = None,
    bands: Iterable[int] | None = None,
    *,
    score_labels: bool = False,
    line_width: int = 2,
) -> Path:
    """Render ``raster_path`` with the ``features``' outlines to the PNG ``out_png``; returns its path.

    ``features``: ``(geometry, class_id, score)`` tuples, shapely geometries in the raster's CRS
    (pixel coordinates for a raster without geotransform), or the path of a vector file whose
    features carry ``class_id`` and ``score`` properties (reprojected to the raster's CRS when its
    CRS differs). ``colours``: class id -> PIL colour (name or ``#rrggbb``); other classes are red.
    ``bands``: 1-based band indices, 1 (grey) or 3 (RGB); default: grey for 1-2 bands, the first
    three as RGB otherwise. ``score_labels`` writes each feature's score (two decimals) beside its
    top-left corner. The PNG is written atomically (temporary file + rename).
    """
    raster_path = Path(raster_path)
    out_png = Path(out_png)
    if max_size < 1:
        raise ValueError(f"max_size must be >= 1, got {max_size}")
    if line_width < 1:
        raise ValueError(f"line_width must be >= 1, got {line_width}")
    if not out_png.parent.is_dir():
        raise UserError(f"output '{out_png}': directory '{out_png.parent}' does not exist")
    if not raster_path.exists():
        raise UserError(f"raster '{raster_path}': file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(raster_path)
    except RasterioIOError as exc:
        raise UserError(f"raster '{raster_path}': not a readable raster "
                        f"({str(exc).splitlines()[0][:150]})") from None
    with src:
        band_list = _choose_bands(src.count, bands, raster_path)
        rgb, transform = _read_display(src, band_list, max_size)
        raster_crs = src.crs

    if isinstance(features, (str, os.PathLike)):
        features = _read_vector(Path(features), raster_crs)

    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    draw.fontmode = "1"  # labels without anti-aliasing: crisp, exactly the class colour
    height, width = rgb.shape[:2]
    margin = line_width + 2.0
    view = box(-margin, -margin, width + margin, height + margin)
    inverse = ~transform
    palette = {int(k): ImageColor.getrgb(v) for k, v in (colours or {}).items()}
    default = ImageColor.getrgb(DEFAULT_COLOUR)
    font = ImageFont.load_default() if score_labels else None

    for geom, class_id, score in features:
        if geom is None or geom.is_empty:
            continue
        colour = palette.get(int(class_id), default) if class_id is not None else default
        for coords in _lines(geom):
            _draw_line(draw, _to_pixels(coords[:, :2], inverse), colour, line_width, view)
        for x, y in _points(geom):
            px, py = _to_pixels(np.array([[x, y]]), inverse)[0]
            r = line_width + 1
            draw.ellipse([px - r, py - r, px + r, py + r], outline=colour, width=1)
        if font is not None and score is not None and not math.isnan(float(score)):
            x0, y0, x1, y1 = geom.bounds
            corners = _to_pixels(np.array([[x0, y0], [x1, y1]], dtype=float), inverse)
            left, top = corners[:, 0].min(), corners[:, 1].min()
            text = f"{float(score):.2f}"
            _, _, _, text_h = draw.textbbox((0, 0), text, font=font)
            draw.text((left, max(0.0, top - line_width - 1 - text_h)), text, fill=colour, font=font)

    tmp = out_png.with_name(f".{out_png.name}.{uuid.uuid4().hex[:8]}.partial.png")
    try:
        image.save(tmp, format="PNG")
        os.replace(tmp, out_png)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out_png
