"""Overlap-blended stitching of per-tile class probabilities into one map, streamed in strips of rows.

Each tile's probabilities [K+1,h,w] are weighted by a window that is 1 in the tile's middle and tapers
(cosine) across the `overlap` pixels at every window edge that has a neighbouring tile; edges on the
border of the tiled area are not tapered. The window
is strictly positive, so every pixel a tile covers gets weight. Where two regular neighbours overlap
by exactly `overlap` pixels their tapers sum to 1; the stitched probability is
sum_t(w_t * p_t) / sum_t(w_t), a convex combination of the tiles' probabilities (no seams).

`StripStitcher` keeps only the rows that a tile still to come may touch: tiles arrive in row-major
order and `release(frontier)` hands out the final rows above the smallest window row of the remaining
tiles. Coordinates are working-grid pixels (row, col); ranges are half-open.
"""
from __future__ import annotations

import numpy as np

from engine.tiling import Tile, tiles_area


def edge_taper(length: int, overlap: int, taper_start: bool, taper_end: bool) -> np.ndarray:
    """[length] float32 weights along one axis of a window: 1, with a cosine ramp over the first/last
    `overlap` pixels where `taper_start`/`taper_end`. Pixel j of a ramp (counted from the window edge) weighs
    sin^2(pi/2 * (j + 0.5) / overlap) > 0, so two ramps over the same `overlap` pixels sum to 1."""
    weights = np.ones(length, np.float64)
    if overlap <= 0:
        return weights.astype(np.float32)
    ramp = np.sin(np.pi / 2 * (np.arange(min(overlap, length)) + 0.5) / overlap) ** 2
    if taper_start:
        weights[: ramp.size] = np.minimum(weights[: ramp.size], ramp)
    if taper_end:
        weights[length - ramp.size:] = np.minimum(weights[length - ramp.size:], ramp[::-1])
    return weights.astype(np.float32)


def tile_weights(tile: Tile, overlap: int, area: tuple[int, int, int, int]) -> np.ndarray:
    """[h,w] float32 blending window of `tile` (separable product of `edge_taper`s), > 0 everywhere.

    A side is tapered unless it lies on the border of the tiled `area` ``(row0, col0, row1, col1)``.
    """
    row0, col0, row1, col1 = area
    rows = edge_taper(tile.height, overlap, tile.row_off > row0, tile.row_off + tile.height < row1)
    cols = edge_taper(tile.width, overlap, tile.col_off > col0, tile.col_off + tile.width < col1)
    return rows[:, None] * cols[None, :]


def normalise(prob_sum: np.ndarray, weight_sum: np.ndarray) -> np.ndarray:
    """Weighted sums [K+1,h,w] and weights [h,w] -> probabilities [K+1,h,w] float32 = prob_sum / weight_sum;
    pixels without weight (no tile ran there: nodata) are background (class 0, probability 1)."""
    probs = np.zeros(prob_sum.shape, np.float32)
    covered = weight_sum > 0
    probs[:, covered] = prob_sum[:, covered] / weight_sum[covered]
    probs[0, ~covered] = 1.0
    return probs


class StripStitcher:
    """Accumulates weighted tile probabilities over a rolling strip of rows of the tiled area.

    `area`: ``(row0, col0, row1, col1)`` of the tiled area in working-grid pixels; `channels`: K+1.
    Memory: channels + 1 float32 rows of the area's width for each row held (about one tile height plus
    one stride), whatever the area's height.
    """

    def __init__(self, area: tuple[int, int, int, int], channels: int) -> None:
        self.row0, self.col0, self.row1, self.col1 = area
        self.channels = channels
        self.top = self.row0  # first row not yet released
        self.prob_sum = np.zeros((channels, 0, self.col1 - self.col0), np.float32)
        self.weight_sum = np.zeros((0, self.col1 - self.col0), np.float32)
        self.peak_rows = 0  # most rows held at once

    def add(self, tile: Tile, probs: np.ndarray, weights: np.ndarray) -> None:
        """Add one tile: `probs` [K+1,h,w] and `weights` [h,w] on the tile's window (rows >= released rows)."""
        if probs.shape != (self.channels, tile.height, tile.width) or weights.shape != (tile.height, tile.width):
            raise ValueError(f"tile {tile.window}: probs {probs.shape} / weights {weights.shape} do not match "
                             f"({self.channels}, {tile.height}, {tile.width})")
        if tile.row_off < self.top:
            raise ValueError(f"tile {tile.window} starts above row {self.top}, which was already released")
        bottom = tile.row_off + tile.height - self.top
        if bottom > self.weight_sum.shape[0]:
            extra = bottom - self.weight_sum.shape[0]
            self.prob_sum = np.concatenate(
                [self.prob_sum, np.zeros((self.channels, extra, self.prob_sum.shape[2]), np.float32)], axis=1)
            self.weight_sum = np.concatenate([self.weight_sum, np.zeros((extra, self.weight_sum.shape[1]),
                                                                        np.float32)], axis=0)
            self.peak_rows = max(self.peak_rows, self.weight_sum.shape[0])
        rows = slice(tile.row_off - self.top, bottom)
        cols = slice(tile.col_off - self.col0, tile.col_off - self.col0 + tile.width)
        self.prob_sum[:, rows, cols] += probs * weights
        self.weight_sum[rows, cols] += weights

    def release(self, frontier: int | None) -> tuple[int, np.ndarray]:
        """Rows [top, frontier) are final (None: every remaining row) -> (their first row, probabilities
        [K+1,n,width] from `normalise`), and they are dropped from the strip. n may be 0."""
        stop = self.row1 if frontier is None else min(max(frontier, self.top), self.row1)
        n = stop - self.top
        held = self.weight_sum.shape[0]
        prob_sum, weight_sum = self.prob_sum[:, :n], self.weight_sum[:n]
        if n > held:  # rows no tile covered (cannot happen with a tile grid): background
            prob_sum = np.concatenate([prob_sum, np.zeros((self.channels, n - held, prob_sum.shape[2]),
                                                          np.float32)], axis=1)
            weight_sum = np.concatenate([weight_sum, np.zeros((n - held, weight_sum.shape[1]), np.float32)])
        out = (self.top, normalise(prob_sum, weight_sum))
        if n:
            self.prob_sum, self.weight_sum = self.prob_sum[:, n:].copy(), self.weight_sum[n:].copy()
        self.top = stop
        return out


def stitch_tiles(tiles: list[Tile], predictions: list[np.ndarray], overlap: int,
                 valid: list[np.ndarray | None] | None = None) -> np.ndarray:
    """All at once (tests, small areas): tiles and their probabilities [K+1,h,w] -> [K+1,H,W] over the tiles'
    bounding area. `valid`: optional per-tile [h,w] bool; invalid pixels get no weight from that tile."""
    area = tiles_area(tiles)
    order = sorted(range(len(tiles)), key=lambda i: (tiles[i].row_off, tiles[i].col_off))
    stitcher = StripStitcher(area, predictions[0].shape[0])
    for i in order:
        weights = tile_weights(tiles[i], overlap, area)
        if valid is not None and valid[i] is not None:
            weights = weights * valid[i]
        stitcher.add(tiles[i], predictions[i], weights)
    return stitcher.release(None)[1]
