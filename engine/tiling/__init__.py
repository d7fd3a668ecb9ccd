"""Pure tiling math: tile windows and their non-overlapping "core" regions (no rasterio, no torch)."""

from engine.tiling.extent import extent_to_window, map_bounds
from engine.tiling.grid import Tile, axis_starts, tile_grid, tile_grid_window, tiles_area

__all__ = ["Tile", "axis_starts", "extent_to_window", "map_bounds", "tile_grid", "tile_grid_window", "tiles_area"]
