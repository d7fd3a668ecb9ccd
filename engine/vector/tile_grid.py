"""QA layer of the tile grid: one polygon per tile window with its core and what happened to it."""
from __future__ import annotations

import os
from dataclasses import dataclass

from affine import Affine
from shapely.geometry import Polygon

from engine.tiling import Tile
from engine.vector.writer import VectorWriter

TILE_FIELDS: tuple[tuple[str, str], ...] = (
    ("tile", "int"),
    ("row_off", "int"),
    ("col_off", "int"),
    ("height", "int"),
    ("width", "int"),
    ("core_row0", "int"),
    ("core_col0", "int"),
    ("core_row1", "int"),
    ("core_col1", "int"),
    ("status", "str"),  # "run" (through the model); skipped: "nodata" (no valid pixel), "outside_aoi" or
    # "excluded" (the area masks of segment --aoi / --exclude)
    ("n_predictions", "int"),  # instances above the score threshold predicted in this window
)


@dataclass(frozen=True)
class TileRecord:
    tile: Tile
    status: str
    n_predictions: int


def window_polygon(row_off: int, col_off: int, height: int, width: int, transform: Affine) -> Polygon:
    """A pixel window ``[row_off, row_off + height) x [col_off, col_off + width)`` in map coordinates."""
    corners = [(col_off, row_off), (col_off + width, row_off), (col_off + width, row_off + height),
               (col_off, row_off + height)]
    return Polygon([transform @ c for c in corners])


def write_tile_grid(path: str | os.PathLike, records: list[TileRecord], transform: Affine,
                    crs_wkt: str | None, overwrite: bool = False) -> int:
    """Write the tile windows (atomically; into an existing GeoPackage as its layer "tiles", unless `overwrite`)
    with core bounds (raster pixels) and status; returns the count."""
    with VectorWriter(path, crs_wkt, layer_name="tiles", fields=TILE_FIELDS, overwrite=overwrite) as writer:
        for index, rec in enumerate(records):
            t = rec.tile
            writer.write(window_polygon(t.row_off, t.col_off, t.height, t.width, transform), {
                "tile": index, "row_off": t.row_off, "col_off": t.col_off, "height": t.height, "width": t.width,
                "core_row0": t.core[0], "core_col0": t.core[1], "core_row1": t.core[2], "core_col1": t.core[3],
                "status": rec.status, "n_predictions": rec.n_predictions,
            })
        return writer.count
