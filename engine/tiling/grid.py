"""Tile grid over a raster: overlapping windows plus cores that partition the raster.

All quantities are integer pixel counts/offsets in raster pixel coordinates (row, col), origin at
the top-left pixel. Ranges are half-open.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Tile:
    """One read window and the part of it that this tile "owns".

    ``row_off, col_off, height, width``: the window in raster pixels.
    ``core``: ``(row0, col0, row1, col1)``, half-open, raster pixels; the cores of a grid partition
    the raster, so a prediction is kept by the tile whose core contains it.
    """

    row_off: int
    col_off: int
    height: int
    width: int
    core: tuple[int, int, int, int]

    @property
    def window(self) -> tuple[int, int, int, int]:
        """``(row_off, col_off, height, width)`` in raster pixels."""
        return (self.row_off, self.col_off, self.height, self.width)

    @property
    def core_in_window(self) -> tuple[int, int, int, int]:
        """The core as ``(row0, col0, row1, col1)`` relative to the window's top-left pixel."""
        r0, c0, r1, c1 = self.core
        return (r0 - self.row_off, c0 - self.col_off, r1 - self.row_off, c1 - self.col_off)


def _validate(size: int, tile: int, overlap: int, name: str) -> None:
    if size <= 0:
        raise ValueError(f"raster {name} must be > 0 pixels, got {size}")
    if tile <= 0:
        raise ValueError(f"tile_size must be > 0 pixels, got {tile}")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0 pixels, got {overlap}")
    if overlap >= tile:
        raise ValueError(f"overlap ({overlap}) must be smaller than tile_size ({tile})")


def axis_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Window start offsets along one axis of ``size`` pixels.

    With ``t = min(tile, size)`` and ``stride = tile - overlap``, the number of windows is
    ``n = ceil((size - t) / stride) + 1``. Starts are ``0, stride, 2 * stride, ...``; the last one is
    ``size - t``, so the last window ends exactly at the raster edge (it may overlap its neighbour by
    more than ``overlap``). Starts are strictly increasing and every window lies inside ``[0, size)``.
    """
    _validate(size, tile, overlap, "size")
    t = min(tile, size)
    stride = tile - overlap
    n = math.ceil((size - t) / stride) + 1
    return [i * stride for i in range(n - 1)] + [size - t]


def _axis_cores(starts: list[int], t: int, size: int) -> list[tuple[int, int]]:
    """Half-open core ``(start, stop)`` per window: boundaries at the midpoint of each overlap."""
    bounds = [0]
    for a, b in zip(starts[:-1], starts[1:]):
        # The overlap of [a, a + t) and [b, b + t) is [b, a + t); cut it in the middle.
        bounds.append((b + a + t) // 2)
    bounds.append(size)
    return list(zip(bounds[:-1], bounds[1:]))


def tile_grid(height: int, width: int, tile_size: int, overlap: int) -> list[Tile]:
    """Overlapping ``tile_size`` x ``tile_size`` windows covering a ``height`` x ``width`` raster.

    Along an axis where the raster is smaller than ``tile_size`` the window is the raster size.
    Tiles per axis: ``ceil((size - tile) / (tile - overlap)) + 1`` (see :func:`axis_starts`).
    Tiles are ordered row-major (top to bottom, then left to right). Each tile's ``core`` lies in
    its window and the cores partition the raster: the boundary between two neighbouring cores is
    at the midpoint of their windows' overlap, far from either window's edge.

    Raises ValueError for non-positive sizes, ``tile_size <= 0``, ``overlap < 0`` or
    ``overlap >= tile_size``.
    """
    _validate(height, tile_size, overlap, "height")
    _validate(width, tile_size, overlap, "width")
    th, tw = min(tile_size, height), min(tile_size, width)
    rows = axis_starts(height, tile_size, overlap)
    cols = axis_starts(width, tile_size, overlap)
    row_cores = _axis_cores(rows, th, height)
    col_cores = _axis_cores(cols, tw, width)
    tiles = []
    for r, (cr0, cr1) in zip(rows, row_cores):
        for c, (cc0, cc1) in zip(cols, col_cores):
            tiles.append(Tile(r, c, th, tw, (cr0, cc0, cr1, cc1)))
    return tiles


def tile_grid_window(row0: int, col0: int, height: int, width: int, tile_size: int, overlap: int) -> list[Tile]:
    """:func:`tile_grid` over the ``height`` x ``width`` window at ``(row0, col0)``, in raster pixels.

    Windows and cores are offset by ``(row0, col0)``: every window lies inside the given window and
    the cores partition it exactly.
    """
    return [
        Tile(t.row_off + row0, t.col_off + col0, t.height, t.width,
             (t.core[0] + row0, t.core[1] + col0, t.core[2] + row0, t.core[3] + col0))
        for t in tile_grid(height, width, tile_size, overlap)
    ]


def tiles_area(tiles: list[Tile]) -> tuple[int, int, int, int]:
    """Bounding area of `tiles` in pixels: (row0, col0, row1, col1), half-open."""
    return (min(t.row_off for t in tiles), min(t.col_off for t in tiles),
            max(t.row_off + t.height for t in tiles), max(t.col_off + t.width for t in tiles))
