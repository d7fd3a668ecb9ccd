"""Area masks of `rsseg segment`: `--aoi` (keep only what lies inside) and `--exclude` (drop what lies inside).

Each is a polygon layer in any CRS and any format OGR reads (GeoPackage, Shapefile, GeoJSON; the first layer of
the file, or 'f.gpkg|layername=x'), read by engine.data.chip_io (as `rsseg chips --aoi`), reprojected to the
working grid's CRS (the raster's, or the UTM grid a geographic raster is segmented on), unioned and clipped to the
raster. The rule, the same for instance objects and semantic class regions:

- a feature is kept when its representative point (shapely `representative_point()`: a point always inside the
  polygon) lies inside the AOI (when given) and not inside the exclude polygons (when given); a point on an edge
  counts as inside;
- a tile whose window shares no area with the AOI (status "outside_aoi"), or lies wholly inside the exclude
  polygons ("excluded"), is neither read nor run; the QA tile grid gives it that status;
- without `--extent`, the area to segment is the AOI's bounding box (clipped to the raster), as with `--extent`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import shapely
from affine import Affine
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from engine.data.chip_io import read_area_layer, split_source
from engine.errors import UserError
from engine.tiling import Tile, extent_to_window
from engine.vector.tile_grid import window_polygon

OUTSIDE_AOI = "outside_aoi"
EXCLUDED = "excluded"


@dataclass(frozen=True)
class AreaMask:
    """The AOI and exclude polygons as single prepared geometries in the working grid's map coordinates, clipped
    to the raster (None: not given)."""

    aoi: BaseGeometry | None = None
    exclude: BaseGeometry | None = None

    def keeps(self, geometry: BaseGeometry) -> bool:
        """Whether a feature (working grid's map coordinates) stays: its representative point inside the AOI and
        not inside the exclude polygons."""
        point = geometry.representative_point()
        return ((self.aoi is None or self.aoi.intersects(point))
                and (self.exclude is None or not self.exclude.intersects(point)))

    def tile_status(self, window: Polygon) -> str | None:
        """OUTSIDE_AOI or EXCLUDED for a tile window (map coordinates) not to run; None for one to run."""
        if self.aoi is not None and (not self.aoi.intersects(window) or self.aoi.touches(window)):
            return OUTSIDE_AOI
        if self.exclude is not None and self.exclude.covers(window):
            return EXCLUDED
        return None


def mask_inputs(aoi: str | None, exclude: str | None) -> list[tuple[str, str]]:
    """(flag, file) of the mask layers given, for the "no output may be an input" check (a '|layername=' suffix
    is not part of the file)."""
    return [(flag, split_source(source)[0]) for flag, source in (("--aoi", aoi), ("--exclude", exclude)) if source]


def _area(source: str | None, flag: str, crs_wkt: str | None, footprint: Polygon) -> BaseGeometry | None:
    """One mask layer as one prepared geometry clipped to `footprint` (None when `source` is None)."""
    if not source:
        return None
    layer = read_area_layer(source, crs_wkt, flag)
    # each polygon clipped first: a land or coastline layer may reach far beyond the raster
    area = unary_union(shapely.intersection(list(layer.geometries), footprint))
    shapely.prepare(area)
    return area


def read_area_mask(aoi: str | None, exclude: str | None, raster: str | Path, crs_wkt: str | None,
                   transform: Affine, height: int, width: int) -> AreaMask | None:
    """The masks of `raster` on its working grid (CRS, pixel -> map `transform`, size in pixels); None when neither
    is given. UserError for a missing or unreadable layer, one without polygons, or an AOI off the raster."""
    if not aoi and not exclude:
        return None
    footprint = window_polygon(0, 0, height, width, transform)
    mask = AreaMask(_area(aoi, "--aoi", crs_wkt, footprint), _area(exclude, "--exclude", crs_wkt, footprint))
    if mask.aoi is not None and mask.aoi.area <= 0:
        raise UserError(f"--aoi '{split_source(aoi)[0]}': does not overlap raster '{raster}'; check that the layer "
                        "covers the raster (and its CRS)")
    return mask


def aoi_window(mask: AreaMask | None, transform: Affine, height: int,
               width: int) -> tuple[int, int, int, int] | None:
    """``(row0, col0, height, width)``: the pixels under the AOI's bounding box (None: no AOI)."""
    if mask is None or mask.aoi is None:
        return None
    return extent_to_window(mask.aoi.bounds, transform, height, width)


def masked_tiles(tiles: Sequence[Tile], mask: AreaMask | None, transform: Affine) -> dict[Tile, str]:
    """The tiles not to run, with their status (OUTSIDE_AOI, EXCLUDED); windows mapped by `transform`."""
    if mask is None:
        return {}
    found = {}
    for tile in tiles:
        status = mask.tile_status(window_polygon(*tile.window, transform))
        if status is not None:
            found[tile] = status
    return found


def check_masked(tiles: Sequence[Tile], masked: Mapping[Tile, str], aoi: str | None, raster: str | Path) -> list[str]:
    """UserError when the AOI leaves no tile of the area to segment (it lies outside `--extent`); a note when the
    exclude polygons cover every tile (the output is empty)."""
    if not tiles or len(masked) < len(tiles):
        return []
    if all(status == OUTSIDE_AOI for status in masked.values()):
        raise UserError(f"--aoi '{split_source(aoi or '')[0]}': does not overlap the area to segment of raster "
                        f"'{raster}' (--extent); check the layer, its CRS and --extent")
    return ["--aoi and --exclude leave no tile to run: nothing is segmented, the output is empty"
            if aoi else "--exclude covers every tile: nothing is segmented, the output is empty"]
