"""Pure tiling math: tile windows and their non-overlapping "core" regions (no rasterio, no torch)."""

from engine.tiling.grid import Tile, axis_starts, tile_grid

__all__ = ["Tile", "axis_starts", "tile_grid"]
