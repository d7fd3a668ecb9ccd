"""Property tests of the tile grid over many random raster/tile/overlap combinations."""

import math

import numpy as np
import pytest
from affine import Affine

from engine.tiling import Tile, axis_starts, extent_to_window, map_bounds, tile_grid, tile_grid_window


def _random_cases(n: int, seed: int = 0):
    rs = np.random.RandomState(seed)
    for _ in range(n):
        tile = int(rs.randint(1, 80))
        overlap = int(rs.randint(0, tile))
        # Sizes scale with the tile so that the grids stay small (fast) but cover every edge case.
        height = int(rs.randint(1, 5 * tile + 40))
        width = int(rs.randint(1, 5 * tile + 40))
        yield height, width, tile, overlap


CASES = list(_random_cases(300)) + [
    (1, 1, 1, 0), (512, 512, 256, 32), (100, 100, 100, 10), (101, 100, 100, 10),
    (30, 500, 64, 16), (7, 7, 64, 63), (1000, 3, 5, 4),
]


def _n_tiles(size: int, tile: int, overlap: int) -> int:
    t = min(tile, size)
    return math.ceil((size - t) / (tile - overlap)) + 1


@pytest.mark.parametrize("chunk", range(4))
def test_grid_properties(chunk: int) -> None:
    for height, width, tile, overlap in CASES[chunk::4]:
        tiles = tile_grid(height, width, tile, overlap)
        case = (height, width, tile, overlap)
        assert len(tiles) == _n_tiles(height, tile, overlap) * _n_tiles(width, tile, overlap), case
        covered = np.zeros((height, width), np.int32)
        owned = np.zeros((height, width), np.int32)
        for t in tiles:
            r, c, h, w = t.window
            assert h == min(tile, height) and w == min(tile, width), case
            assert 0 <= r and r + h <= height and 0 <= c and c + w <= width, case
            r0, c0, r1, c1 = t.core
            assert r <= r0 < r1 <= r + h and c <= c0 < c1 <= c + w, case
            covered[r : r + h, c : c + w] += 1
            owned[r0:r1, c0:c1] += 1
        assert covered.min() >= 1, case
        assert (owned == 1).all(), case
        assert max(t.row_off + t.height for t in tiles) == height, case
        assert max(t.col_off + t.width for t in tiles) == width, case


def test_axis_starts_edges_and_stride() -> None:
    rs = np.random.RandomState(1)
    for _ in range(500):
        tile = int(rs.randint(1, 100))
        overlap = int(rs.randint(0, tile))
        size = int(rs.randint(1, 1000))
        starts = axis_starts(size, tile, overlap)
        t = min(tile, size)
        assert starts[0] == 0
        assert starts[-1] == size - t  # last window ends exactly at the edge
        assert len(starts) == _n_tiles(size, tile, overlap)
        steps = np.diff(starts)
        assert (steps > 0).all()
        assert (steps[:-1] == tile - overlap).all()  # regular stride except the shifted last one
        assert (steps <= tile - overlap).all()  # never a gap between windows


def test_known_grid() -> None:
    # 10 px, tile 4, overlap 2: stride 2, ceil(6 / 2) + 1 = 4 windows at 0, 2, 4, 6.
    assert axis_starts(10, 4, 2) == [0, 2, 4, 6]
    # 11 px: ceil(7 / 2) + 1 = 5 windows; the last one is shifted back to end at 11.
    assert axis_starts(11, 4, 2) == [0, 2, 4, 6, 7]
    tiles = tile_grid(10, 4, 4, 2)
    assert [t.core for t in tiles] == [(0, 0, 3, 4), (3, 0, 5, 4), (5, 0, 7, 4), (7, 0, 10, 4)]
    assert tiles[1].window == (2, 0, 4, 4)
    assert tiles[1].core_in_window == (1, 0, 3, 4)


def test_raster_smaller_than_tile() -> None:
    tiles = tile_grid(20, 30, 256, 32)
    assert tiles == [Tile(0, 0, 20, 30, (0, 0, 20, 30))]


@pytest.mark.parametrize(
    "args, match",
    [
        ((10, 10, 0, 0), "tile_size"),
        ((10, 10, 4, -1), "overlap"),
        ((10, 10, 4, 4), "smaller than tile_size"),
        ((0, 10, 4, 1), "height"),
        ((10, -5, 4, 1), "width"),
    ],
)
def test_invalid_arguments(args, match) -> None:
    with pytest.raises(ValueError, match=match):
        tile_grid(*args)


def test_window_grid_cores_partition_the_window() -> None:
    rs = np.random.RandomState(2)
    for height, width, tile, overlap in CASES[::3]:
        row0, col0 = int(rs.randint(0, 50)), int(rs.randint(0, 50))
        case = (row0, col0, height, width, tile, overlap)
        tiles = tile_grid_window(row0, col0, height, width, tile, overlap)
        assert len(tiles) == len(tile_grid(height, width, tile, overlap)), case
        owned = np.zeros((row0 + height + 1, col0 + width + 1), np.int32)
        for t in tiles:
            r, c, h, w = t.window
            assert row0 <= r and r + h <= row0 + height and col0 <= c and c + w <= col0 + width, case
            r0, c0, r1, c1 = t.core
            assert r <= r0 < r1 <= r + h and c <= c0 < c1 <= c + w, case
            owned[r0:r1, c0:c1] += 1
        assert (owned[row0:row0 + height, col0:col0 + width] == 1).all(), case
        assert owned.sum() == height * width, case  # nothing owned outside the window


GEO = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0)  # 10 m pixels, north up


@pytest.mark.parametrize("extent, window", [
    ((500000, 3999000, 501000, 4000000), (0, 0, 100, 100)),  # exactly on pixel edges
    ((500005, 3999005, 500995, 3999995), (0, 0, 100, 100)),  # inside pixels: rounded outwards
    ((499000, 3990000, 500015, 4010000), (0, 0, 200, 2)),  # clipped to the 200 x 300 raster
    ((502990, 3998001, 600000, 3998010), (199, 299, 1, 1)),  # one corner pixel
    ((503000, 3998000, 504000, 3999000), None),  # touches the corner only: no pixel area
    ((0, 0, 10, 10), None),
])
def test_extent_to_window(extent, window) -> None:
    assert extent_to_window(extent, GEO, 200, 300) == window


def test_extent_in_pixels_and_bounds() -> None:
    identity = Affine.identity()  # rasters without CRS: x = column, y = row
    assert extent_to_window((10.5, 20, 30, 40.2), identity, 100, 100) == (20, 10, 21, 20)
    assert map_bounds(GEO, 200, 300) == (500000, 3998000, 503000, 4000000)
    with pytest.raises(ValueError, match="xmin < xmax"):
        extent_to_window((5, 0, 5, 10), GEO, 10, 10)
