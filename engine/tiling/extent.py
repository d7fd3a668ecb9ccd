"""Map extents <-> pixel windows through an affine geotransform (pure math; no rasterio, no torch).

``transform`` is an affine pixel -> map transform with coefficients ``a b c d e f`` and an inverse
``~transform``, e.g. ``affine.Affine``. Extents are ``(xmin, ymin, xmax, ymax)`` in map units;
windows are ``(row0, col0, height, width)`` in raster pixels.
"""

from __future__ import annotations

import math

Extent = tuple[float, float, float, float]

_EPS = 1e-6  # pixels: an extent edge this close to a pixel edge counts as on it


def _apply(t, x: float, y: float) -> tuple[float, float]:
    """``t * (x, y)``, spelled out (affine 3 deprecates ``*``, affine 2 lacks ``@``)."""
    return (t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f)


def map_bounds(transform, height: int, width: int) -> Extent:
    """``(xmin, ymin, xmax, ymax)`` of a ``height`` x ``width`` raster in map units."""
    xs, ys = zip(*(_apply(transform, c, r) for r in (0, height) for c in (0, width)))
    return (min(xs), min(ys), max(xs), max(ys))


def extent_to_window(extent: Extent, transform, height: int, width: int) -> tuple[int, int, int, int] | None:
    """The pixel window covering ``extent``, rounded outwards and clipped to the raster.

    Every pixel that the extent touches (with positive area) is inside the window. Returns None
    when the extent does not intersect the raster. Raises ValueError when ``xmin >= xmax`` or
    ``ymin >= ymax``.
    """
    xmin, ymin, xmax, ymax = extent
    if not (xmin < xmax and ymin < ymax):
        raise ValueError(f"extent {xmin},{ymin},{xmax},{ymax}: needs xmin < xmax and ymin < ymax")
    inverse = ~transform
    cols, rows = zip(*(_apply(inverse, x, y) for x in (xmin, xmax) for y in (ymin, ymax)))
    row0 = max(0, math.floor(min(rows) + _EPS))
    col0 = max(0, math.floor(min(cols) + _EPS))
    row1 = min(height, math.ceil(max(rows) - _EPS))
    col1 = min(width, math.ceil(max(cols) - _EPS))
    if row0 >= row1 or col0 >= col1:
        return None
    return (row0, col0, row1 - row0, col1 - col0)
