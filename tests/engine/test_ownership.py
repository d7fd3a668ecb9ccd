"""Tile-core ownership at seams: a complete view of an object wins alone; only objects every tile saw cut
are unioned; views are flagged truncated only at inner window edges."""
from __future__ import annotations

import numpy as np
import pytest

from engine.merge import StreamingMerger, merge_group, merge_seam_duplicates
from engine.tasks.instance import tile_instances
from engine.tiling import tile_grid


def _ellipse(height: int, width: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    rr, cc = np.mgrid[0:height, 0:width] + 0.5
    return ((rr - cy) / ry) ** 2 + ((cc - cx) / rx) ** 2 <= 1.0


def _tile_views(full: np.ndarray, tiles, scores: dict[int, float] | None = None, grid=None):
    """What an exact model predicts on each tile: the object restricted to the window, via tile_instances."""
    height, width = full.shape
    views = []
    for k, tile in enumerate(tiles):
        r, c, h, w = tile.window
        prob = full[r:r + h, c:c + w].astype(np.float32)[None]
        if not prob.any():
            continue
        score = (scores or {}).get(k, 0.9)
        out = {"labels": np.array([1]), "scores": np.array([score], np.float32), "masks": prob}
        views += tile_instances(out, tile, 0.05, 0.5, grid or (0, 0, height, width))
    return views


def _streamed(views, tiles):
    """The objects a StreamingMerger hands out when the views arrive tile by tile, flushed at each frontier."""
    merger, streamed = StreamingMerger(), []
    for tile in tiles:
        merger.add([v for v in views if v.window[:2] == (tile.row_off, tile.col_off)])
        later = [t.row_off for t in tiles if (t.row_off, t.col_off) > (tile.row_off, tile.col_off)]
        streamed += merger.flush(min(later) if later else None)
    return streamed


def _paint(inst, shape) -> np.ndarray:
    canvas = np.zeros(shape, dtype=bool)
    r0, c0, r1, c1 = inst.bbox
    canvas[r0:r1, c0:c1] = inst.mask
    return canvas


def test_truncated_only_at_inner_window_edges() -> None:
    tiles = tile_grid(100, 100, 60, 20)  # starts 0, 40
    border = np.zeros((100, 100), bool)
    border[0:10, 0:10] = True  # touches the raster's top-left border only
    (view,) = _tile_views(border, tiles[:1])
    assert not view.truncated and view.core == tiles[0].core
    crossing = np.zeros((100, 100), bool)
    crossing[10:20, 50:70] = True  # crosses the right edge (col 60) of the first tile
    first = _tile_views(crossing, tiles[:1])[0]
    second = _tile_views(crossing, tiles[1:2])[0]
    assert first.truncated and not second.truncated


def test_object_inside_the_overlap_keeps_one_complete_view() -> None:
    tiles = tile_grid(100, 100, 60, 20)  # starts 0, 40; overlap [40, 60); cores split at 50
    full = _ellipse(100, 100, 20.0, 48.0, 6.0, 5.0)  # cols 43..53: inside both top tiles, clear of edges
    views = _tile_views(full, tiles, scores={0: 0.9, 1: 0.6})
    assert len(views) == 2 and not any(v.truncated for v in views)
    assert [v.centre_in_core() for v in views] == [True, False]
    (obj,) = merge_seam_duplicates(views)
    assert np.array_equal(_paint(obj, full.shape), full)
    assert obj.n_tiles == 2 and not obj.merged and obj.score == pytest.approx(0.9)


def test_owner_wins_over_a_higher_scoring_non_owner() -> None:
    tiles = tile_grid(100, 100, 60, 20)
    full = _ellipse(100, 100, 20.0, 55.0, 4.0, 4.0)  # cols 51..59, centre in the second tile's core [50, 100)
    views = _tile_views(full, tiles, scores={0: 0.95, 1: 0.7})
    assert len(views) == 2
    (obj,) = merge_seam_duplicates(views)
    assert obj.score == pytest.approx(0.7) and obj.window == (0, 40, 60, 100)


def test_spurious_partial_view_does_not_grow_a_complete_one() -> None:
    tiles = tile_grid(100, 100, 60, 20)
    full = _ellipse(100, 100, 20.0, 46.0, 4.0, 4.0)  # cols 42..50, complete in tile 0
    views = _tile_views(full, tiles[:1])
    junk = np.zeros((100, 100), bool)
    junk[14:26, 30:58] = True  # a wider false mask that tile 1 predicts over the object (cut at col 40)
    views += _tile_views(junk, tiles[1:2], scores={0: 0.1})
    assert len(views) == 2 and views[1].truncated
    (obj,) = merge_seam_duplicates(views)
    assert np.array_equal(_paint(obj, full.shape), full) and obj.score == pytest.approx(0.9)
    assert merge_group(views).area > obj.area  # the plain union would have grown it


def test_object_larger_than_the_overlap_is_unioned() -> None:
    tiles = tile_grid(120, 120, 64, 8)
    full = _ellipse(120, 120, 60.0, 61.0, 30.0, 26.0)  # every view is cut
    views = _tile_views(full, tiles)
    assert len(views) == 4 and all(v.truncated for v in views)
    (obj,) = merge_seam_duplicates(views)
    assert np.array_equal(_paint(obj, full.shape), full) and obj.merged and obj.n_tiles == 4


def test_streaming_equals_all_at_once_with_ownership() -> None:
    rng = np.random.default_rng(3)
    for _ in range(10):
        height, width = (int(v) for v in rng.integers(80, 200, 2))
        tiles = tile_grid(height, width, 48, int(rng.integers(4, 24)))
        full = np.zeros((height, width), bool)
        for _ in range(6):
            full |= _ellipse(height, width, *rng.uniform(0, height, 1), *rng.uniform(0, width, 1),
                             *rng.uniform(3, 30, 2))
        views = _tile_views(full, tiles)
        expected = sorted((o.bbox, o.merged, o.n_tiles) for o in merge_seam_duplicates(views))
        streamed = _streamed(views, tiles)
        assert sorted((o.bbox, o.merged, o.n_tiles) for o in streamed) == expected


def test_a_vague_view_does_not_fuse_two_objects_that_one_tile_separated() -> None:
    tiles = tile_grid(100, 100, 60, 20)  # overlap cols [40, 60), cores split at col 50
    ships = [_ellipse(100, 100, 15.0, 46.5, 4.0, 3.0), _ellipse(100, 100, 29.0, 46.5, 4.0, 3.0)]
    views = _tile_views(ships[0], tiles[:1], scores={0: 0.9}) + _tile_views(ships[1], tiles[:1], scores={0: 0.85})
    blob = np.zeros((100, 100), bool)
    blob[8:36, 43:50] = True  # tile 1 sees one vague blob over both ships
    views += _tile_views(blob, tiles[1:2], scores={0: 0.3})
    assert len(views) == 3 and not any(v.truncated for v in views)
    objects = sorted(merge_seam_duplicates(views), key=lambda o: -o.score)
    assert [o.score for o in objects] == pytest.approx([0.9, 0.85])
    for obj, ship in zip(objects, ships):
        assert np.array_equal(_paint(obj, ship.shape), ship)


def test_a_view_from_a_neighbours_overlap_is_kept_only_if_the_owning_tile_saw_it() -> None:
    tiles = tile_grid(100, 100, 60, 20)
    full = _ellipse(100, 100, 20.0, 55.0, 3.0, 3.0)  # cols 52..58: in both top tiles, centre in tile 1's core
    assert merge_seam_duplicates(_tile_views(full, tiles[:1])) == []  # tile 1 (the owner) found nothing
    (obj,) = merge_seam_duplicates(_tile_views(full, tiles[1:2]))
    assert np.array_equal(_paint(obj, full.shape), full)


def test_streaming_equals_all_at_once_with_vague_views() -> None:
    """Random objects plus random low-score rectangles in random tiles (which link objects in the overlap
    graph): flushing at each tile row frontier gives exactly the all-at-once objects."""
    rng = np.random.default_rng(5)
    for _ in range(10):
        height, width = (int(v) for v in rng.integers(80, 200, 2))
        tiles = tile_grid(height, width, 48, int(rng.integers(4, 24)))
        full = np.zeros((height, width), bool)
        for _ in range(6):
            full |= _ellipse(height, width, *rng.uniform(0, height, 1), *rng.uniform(0, width, 1),
                             *rng.uniform(3, 20, 2))
        views = _tile_views(full, tiles)
        for k in rng.choice(len(tiles), size=len(tiles) // 2, replace=False):
            r, c, h, w = tiles[k].window
            blob = np.zeros((height, width), bool)
            r0, c0 = r + int(rng.integers(0, h - 8)), c + int(rng.integers(0, w - 8))
            blob[r0:r0 + int(rng.integers(8, 30)), c0:c0 + int(rng.integers(8, 30))] = True
            views += _tile_views(blob, tiles[k:k + 1], scores={0: float(rng.uniform(0.05, 0.5))})
        expected = sorted((o.bbox, o.merged, o.n_tiles, o.score) for o in merge_seam_duplicates(views))
        streamed = _streamed(views, tiles)
        assert sorted((o.bbox, o.merged, o.n_tiles, o.score) for o in streamed) == expected
