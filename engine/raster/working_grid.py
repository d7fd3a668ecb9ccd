"""The pixel grid a model sees: the raster's own, resampled to the model's GSD, or reprojected to UTM.

Decision (`plan_working_grid`):
- no CRS: the raster's own grid (pixel coordinates);
- geographic CRS (degrees): reprojected to the WGS 84 UTM zone of the raster's centre, at the model's
  GSD when the raster's (measured at the centre) is outside the model's accepted range, else at the
  raster's own. Rasters wider than `MAX_UTM_SPAN_DEG` of longitude or reaching beyond 84 degrees of
  latitude are refused (UTM distorts too much there): reproject them first or pass --extent;
- projected CRS: the raster's own grid when its GSD is inside the model's accepted range, else the
  same CRS resampled to the model's GSD.
Polygons are traced on the working grid and mapped back to the raster's CRS (engine.inference).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from affine import Affine

MAX_UTM_SPAN_DEG = 12.0  # widest longitude span processed in one UTM zone (two zones either side)
MAX_UTM_LAT_DEG = 84.0


@dataclass(frozen=True)
class GridPlan:
    """Where the model works: ``crs`` (user input for rasterio), ``transform``, ``height`` x ``width`` pixels.

    ``reason`` says why it differs from the raster's own grid ("" when it does not).
    """

    crs: str | None
    transform: Affine
    height: int
    width: int
    reprojected: bool = False
    resampled: bool = False
    reason: str = ""

    @property
    def native(self) -> bool:
        return not (self.reprojected or self.resampled)


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS 84 / UTM zone containing (lon, lat) in degrees: 326zz north, 327zz south."""
    zone = min(60, max(1, int(math.floor((lon + 180.0) / 6.0)) + 1))
    return (32600 if lat >= 0 else 32700) + zone


def accepted_gsd_range(model_gsd_m: float, gsd_range_m: tuple[float, float] | None,
                       tolerance: float) -> tuple[float, float]:
    """``(min, max)`` raster GSD (m) taken as is: the trained range, else gsd / (1 + tol) .. gsd * (1 + tol)."""
    if gsd_range_m:
        return (float(gsd_range_m[0]), float(gsd_range_m[1]))
    return (model_gsd_m / (1.0 + tolerance), model_gsd_m * (1.0 + tolerance))


def gsd_accepted(gsd_m: float, accepted: tuple[float, float]) -> bool:
    """True when ``gsd_m`` lies in the accepted range (inclusive, up to float rounding)."""
    return accepted[0] * (1 - 1e-9) <= gsd_m <= accepted[1] * (1 + 1e-9)


def resampled_grid(transform: Affine, height: int, width: int, factor: float) -> tuple[Affine, int, int]:
    """The same footprint with pixels ``factor`` times larger (factor < 1: finer): new transform, height, width.

    Sizes are rounded to whole pixels (at least 1), and the pixel size is adjusted so the grid still
    covers the raster's footprint exactly.
    """
    new_h = max(1, round(height / factor))
    new_w = max(1, round(width / factor))
    sx, sy = width / new_w, height / new_h  # multiply the coefficients (affine 3 deprecates `*`)
    scaled = Affine(transform.a * sx, transform.b * sy, transform.c, transform.d * sx, transform.e * sy, transform.f)
    return scaled, new_h, new_w


def plan_resampling(crs: str, transform: Affine, height: int, width: int, unit_m: float, model_gsd_m: float,
                    accepted: tuple[float, float]) -> GridPlan:
    """Projected raster: its own grid if its GSD (pixel size x ``unit_m``) is accepted, else the model's GSD."""
    gsd_m = (abs(transform.a) + abs(transform.e)) / 2 * unit_m
    if gsd_accepted(gsd_m, accepted):
        return GridPlan(crs, transform, height, width)
    new_t, new_h, new_w = resampled_grid(transform, height, width, model_gsd_m / gsd_m)
    reason = (f"resampled from {gsd_m:.3g} m to the model's {model_gsd_m:.3g} m pixels "
              f"(accepted {accepted[0]:.3g}-{accepted[1]:.3g} m): {width}x{height} -> {new_w}x{new_h} px")
    return GridPlan(crs, new_t, new_h, new_w, resampled=True, reason=reason)


def check_utm_span(lon_min: float, lat_min: float, lon_max: float, lat_max: float) -> str | None:
    """Why a geographic area cannot be processed in one UTM zone, or None when it can."""
    if lon_max - lon_min > MAX_UTM_SPAN_DEG:
        return (f"it spans {lon_max - lon_min:.1f} degrees of longitude (at most {MAX_UTM_SPAN_DEG:g} fit one "
                "UTM zone's working grid)")
    if max(abs(lat_min), abs(lat_max)) > MAX_UTM_LAT_DEG:
        return f"it reaches latitude {max(abs(lat_min), abs(lat_max)):.1f} (UTM stops at {MAX_UTM_LAT_DEG:g})"
    return None
