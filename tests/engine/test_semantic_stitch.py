"""Semantic stitching and strip vectorising: seeded property loops over random rasters, tiles and overlaps."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio.features
from affine import Affine
from shapely.geometry import box, shape
from shapely.ops import unary_union

from engine.merge import row_frontiers
from engine.merge.stitch import StripStitcher, edge_taper, normalise, stitch_tiles, tile_weights
from engine.tiling import tile_grid
from engine.vector.components import StripVectoriser, class_map, core_cells

CASES = 25


def _random_grid(rs: np.random.RandomState):
    height, width = int(rs.randint(5, 130)), int(rs.randint(5, 130))
    tile = int(rs.randint(4, 64))
    overlap = int(rs.randint(0, tile))
    return height, width, tile, overlap, tile_grid(height, width, tile, overlap)


def _crops(field: np.ndarray, tiles) -> list[np.ndarray]:
    return [field[:, t.row_off:t.row_off + t.height, t.col_off:t.col_off + t.width].copy() for t in tiles]


def test_edge_taper_is_positive_one_inside_and_complementary() -> None:
    for overlap in (1, 2, 5, 16):
        ramp_up = edge_taper(3 * overlap, overlap, True, False)
        ramp_down = edge_taper(3 * overlap, overlap, False, True)
        assert (ramp_up > 0).all() and (ramp_up <= 1).all()
        assert np.all(ramp_up[overlap:] == 1) and np.all(ramp_up[:overlap] < 1)
        assert np.all(np.diff(ramp_up[:overlap]) > 0)  # rising towards the middle
        # two neighbours overlapping by exactly `overlap`: their tapers sum to 1 there
        np.testing.assert_allclose(ramp_down[-overlap:] + ramp_up[:overlap], 1.0, atol=1e-6)
    assert np.all(edge_taper(10, 4, False, False) == 1)
    short = edge_taper(5, 8, True, True)  # window shorter than both tapers: still positive
    assert (short > 0).all() and short.max() < 1


def test_weights_cover_every_pixel_and_are_not_tapered_at_the_border() -> None:
    rs = np.random.RandomState(0)
    for _ in range(CASES):
        height, width, _, overlap, tiles = _random_grid(rs)
        total = np.zeros((height, width))
        for t in tiles:
            w = tile_weights(t, overlap, (0, 0, height, width))
            assert w.shape == (t.height, t.width) and (w > 0).all() and (w <= 1).all()
            top, left = t.row_off > 0, t.col_off > 0
            bottom, right = t.row_off + t.height < height, t.col_off + t.width < width
            # 1 at least `overlap` pixels away from every tapered edge
            assert np.all(w[overlap * top:t.height - overlap * bottom, overlap * left:t.width - overlap * right] == 1)
            if not top:  # top border row: only the column taper applies
                np.testing.assert_array_equal(w[0], edge_taper(t.width, overlap, left, right))
            if not right:
                np.testing.assert_array_equal(w[:, -1], edge_taper(t.height, overlap, top, bottom))
            total[t.row_off:t.row_off + t.height, t.col_off:t.col_off + t.width] += w
        assert (total > 0).all()


def test_regular_overlaps_form_a_partition_of_unity() -> None:
    """When every neighbour overlaps by exactly `overlap` the weights sum to 1 (blend = weighted average)."""
    rs = np.random.RandomState(1)
    for _ in range(10):
        tile, overlap = int(rs.randint(6, 40)), 0
        overlap = int(rs.randint(1, tile // 2 + 1))
        stride = tile - overlap
        height, width = tile + stride * int(rs.randint(0, 4)), tile + stride * int(rs.randint(0, 4))
        total = np.zeros((height, width))
        for t in tile_grid(height, width, tile, overlap):
            weights = tile_weights(t, overlap, (0, 0, height, width))
            total[t.row_off:t.row_off + t.height, t.col_off:t.col_off + t.width] += weights
        np.testing.assert_allclose(total, 1.0, atol=1e-5)


def test_constant_prediction_stitches_to_that_constant() -> None:
    rs = np.random.RandomState(2)
    for _ in range(CASES):
        height, width, _, overlap, tiles = _random_grid(rs)
        value = rs.dirichlet(np.ones(3)).astype(np.float32)
        preds = [np.broadcast_to(value[:, None, None], (3, t.height, t.width)).copy() for t in tiles]
        out = stitch_tiles(tiles, preds, overlap)
        assert out.shape == (3, height, width)
        np.testing.assert_allclose(out, np.broadcast_to(value[:, None, None], out.shape), atol=1e-6)


def test_tiles_of_a_global_field_reproduce_it_without_seams() -> None:
    rs = np.random.RandomState(3)
    for _ in range(CASES):
        height, width, _, overlap, tiles = _random_grid(rs)
        rows, cols = np.mgrid[0:height, 0:width]
        field = np.stack([np.sin(rows / 7.0 + rs.rand()) * np.cos(cols / 5.0), rows * 0.01 - cols * 0.02,
                          rs.rand(height, width)]).astype(np.float32)  # smooth, linear and rough channels
        np.testing.assert_allclose(stitch_tiles(tiles, _crops(field, tiles), overlap), field, atol=1e-5)


def test_tile_disagreement_is_blended_smoothly() -> None:
    """Tiles predicting the field plus their own offset: the result stays between the tiles' predictions and
    no seam jumps more than the taper's slope allows (pi / (2 * overlap) of the offsets' spread)."""
    rs = np.random.RandomState(4)
    for _ in range(CASES):
        height, width, tile, _, _ = _random_grid(rs)
        overlap = int(rs.randint(4, max(5, tile // 2 + 1)))
        tile = max(tile, overlap + 1)
        tiles = tile_grid(height, width, tile, overlap)
        field = (np.mgrid[0:height, 0:width][0] * 0.01)[None].astype(np.float32)
        offsets = rs.uniform(-0.5, 0.5, len(tiles)).astype(np.float32)
        preds = [crop + o for crop, o in zip(_crops(field, tiles), offsets)]
        out = stitch_tiles(tiles, preds, overlap)[0] - field[0]
        assert out.min() >= offsets.min() - 1e-5 and out.max() <= offsets.max() + 1e-5
        jump = max(np.abs(np.diff(out, axis=0)).max(initial=0), np.abs(np.diff(out, axis=1)).max(initial=0))
        assert jump <= np.ptp(offsets) * np.pi / (2 * overlap) + 1e-4


def test_strips_equal_stitching_everything_at_once_with_bounded_rows() -> None:
    rs = np.random.RandomState(5)
    for _ in range(CASES):
        height, width, tile, overlap, tiles = _random_grid(rs)
        field = rs.rand(2, height, width).astype(np.float32)
        preds = _crops(field, tiles)
        whole = stitch_tiles(tiles, preds, overlap)
        stitcher = StripStitcher((0, 0, height, width), 2)
        strips = []
        frontiers = row_frontiers(tiles)[1:] + [None]
        for t, p, frontier in zip(tiles, preds, frontiers):
            stitcher.add(t, p, tile_weights(t, overlap, (0, 0, height, width)))
            row0, probs = stitcher.release(frontier)
            assert row0 == sum(s.shape[1] for s in strips)
            strips.append(probs)
        np.testing.assert_array_equal(np.concatenate(strips, axis=1), whole)
        assert stitcher.peak_rows <= min(height, 2 * tile)


def test_pixels_no_tile_ran_on_are_background() -> None:
    probs = normalise(np.ones((3, 2, 2), np.float32), np.array([[1, 0], [2, 0]], np.float32))
    np.testing.assert_array_equal(probs[:, :, 1], [[1, 1], [0, 0], [0, 0]])
    np.testing.assert_allclose(probs[:, 1, 0], 0.5)
    tiles = tile_grid(8, 16, 8, 0)
    valid = [None, np.zeros((8, 8), bool)]  # the right tile's pixels are all nodata
    out = stitch_tiles(tiles, [np.full((2, 8, 8), 0.5, np.float32)] * 2, 0, valid)
    assert np.all(out[0, :, 8:] == 1) and np.all(out[:, :, :8] == 0.5)


def _whole_components(classes: np.ndarray, scores: np.ndarray) -> list[tuple]:
    """(class, pixels, bounds, probability sum) of every 4-connected component, traced at once."""
    out = []
    for geom, value in rasterio.features.shapes(classes, mask=classes > 0, connectivity=4, transform=Affine.identity()):
        poly = shape(geom)
        inside = rasterio.features.rasterize([poly], out_shape=classes.shape).astype(bool)
        out.append((int(value), int(inside.sum()), poly.bounds, round(float(scores[inside].sum()), 3)))
    return sorted(out)


@pytest.mark.parametrize("seed", range(6))
def test_strip_components_equal_components_of_the_whole_map(seed: int) -> None:
    """Random rectangles of 2 classes cut into random strips: the same components (one polygon each,
    valid, holes kept) as tracing the whole map, with summed probabilities and pixel counts."""
    rs = np.random.RandomState(seed)
    height, width = int(rs.randint(30, 90)), int(rs.randint(30, 90))
    classes = np.zeros((height, width), np.uint8)
    for _ in range(12):
        r, c = rs.randint(0, height - 3), rs.randint(0, width - 3)
        classes[r:r + rs.randint(1, 40), c:c + rs.randint(1, 40)] = rs.randint(0, 3)
    scores = rs.uniform(0.4, 1.0, (height, width)).astype(np.float32)
    tiles = tile_grid(height, width, 24, 8)
    vectoriser = StripVectoriser(0, 0, *core_cells(tiles, (0, 0, height, width)))
    found, row = [], 0
    while row < height:
        n = int(rs.randint(1, 12))
        found += vectoriser.add_strip(row, classes[row:row + n], scores[row:row + n], last=row + n >= height)
        row += n
    assert vectoriser.pending == []
    assert all(c.geometry.is_valid and c.geometry.geom_type == "Polygon" for c in found)
    got = sorted((c.class_id, c.pixels, c.geometry.bounds, round(c.prob_sum, 3)) for c in found)
    assert got == _whole_components(classes, scores)
    for c in found:
        assert c.geometry.area == c.pixels and c.merged == (c.strips > 1) and c.cells
    for k in (1, 2):
        expected = unary_union([box(col, r, col + 1, r + 1) for r, col in zip(*np.nonzero(classes == k))])
        traced = unary_union([c.geometry for c in found if c.class_id == k])
        assert traced.symmetric_difference(expected).area < 1e-9


def test_min_area_drops_specks_and_cells_count_tile_cores() -> None:
    classes = np.zeros((40, 40), np.uint8)
    classes[2:4, 2:3] = 1  # 2 pixels
    classes[10:30, 10:30] = 2  # crosses the core boundaries at 20 (tile 24, overlap 8 -> cores 0-20-40)
    tiles = tile_grid(40, 40, 24, 8)
    vectoriser = StripVectoriser(0, 0, *core_cells(tiles, (0, 0, 40, 40)), min_area=3)
    found = vectoriser.add_strip(0, classes[:15], np.ones((15, 40), np.float32))
    found += vectoriser.add_strip(15, classes[15:], np.ones((25, 40), np.float32), last=True)
    assert [(c.class_id, c.pixels, len(c.cells), c.merged) for c in found] == [(2, 400, 4, True)]


def test_class_map_is_the_argmax_and_its_probability() -> None:
    probs = np.array([[[0.2, 0.7]], [[0.5, 0.1]], [[0.3, 0.2]]], np.float32)
    classes, chosen = class_map(probs)
    assert classes.tolist() == [[1, 0]] and chosen[0].tolist() == pytest.approx([0.5, 0.7])
