"""Property tests of the tile grid over many random raster/tile/overlap combinations."""

import math

import numpy as np
import pytest

from engine.tiling import Tile, axis_starts, tile_grid


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
