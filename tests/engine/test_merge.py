"""Seam de-duplication: partial views from overlapping tiles become one instance."""

import numpy as np
import pytest

from engine.merge import Instance, merge_seam_duplicates
from engine.tiling import tile_grid


def _ellipse(height: int, width: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    rr, cc = np.mgrid[0:height, 0:width] + 0.5
    return ((rr - cy) / ry) ** 2 + ((cc - cx) / rx) ** 2 <= 1.0


def _crop_instance(full: np.ndarray, window, class_id: int, score: float) -> Instance | None:
    """What a tile predicts: the object restricted to the tile window, cropped to its bbox."""
    r, c, h, w = window
    part = np.zeros_like(full)
    part[r : r + h, c : c + w] = full[r : r + h, c : c + w]
    rows, cols = np.nonzero(part)
    if rows.size == 0:
        return None
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    return Instance(class_id, score, part[r0:r1, c0:c1].copy(), int(r0), int(c0),
                    window=(r, c, r + h, c + w))


def _paint(inst: Instance, shape) -> np.ndarray:
    canvas = np.zeros(shape, dtype=bool)
    r0, c0, r1, c1 = inst.bbox
    canvas[r0:r1, c0:c1] = inst.mask
    return canvas


def _rect(class_id: int, r0: int, c0: int, h: int, w: int, score: float = 0.9, window=None) -> Instance:
    return Instance(class_id, score, np.ones((h, w), dtype=bool), r0, c0, window=window)


def test_object_under_tile_corner_becomes_one_instance() -> None:
    height = width = 120
    tiles = tile_grid(height, width, 64, 8)
    assert [t.window[:2] for t in tiles] == [(0, 0), (0, 56), (56, 0), (56, 56)]  # overlap [56, 64)
    # Much larger than the 8-px overlap: every partial view extends far outside the shared strip.
    full = _ellipse(height, width, 60.0, 61.0, 30.0, 26.0)
    scores = [0.9, 0.8, 0.7, 0.6]
    parts = [_crop_instance(full, t.window, 3, s) for t, s in zip(tiles, scores)]
    assert all(p is not None for p in parts)
    assert all(p.area < full.sum() for p in parts)
    merged = merge_seam_duplicates(parts)
    assert len(merged) == 1
    (m,) = merged
    assert np.array_equal(_paint(m, full.shape), full)
    assert m.merged and m.n_tiles == 4 and m.class_id == 3
    areas = np.array([p.area for p in parts], dtype=float)
    assert m.score == pytest.approx(float((areas * scores).sum() / areas.sum()))
    # Mask is cropped to the object's bbox.
    rows, cols = np.nonzero(full)
    assert m.bbox == (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
    # Without tile windows the whole-mask ratio is small (parts overlap only in the 8-px strip).
    for p in parts:
        p.window = None
    assert len(merge_seam_duplicates(parts)) > 1


def test_input_order_does_not_matter() -> None:
    tiles = tile_grid(120, 120, 64, 8)
    full = _ellipse(120, 120, 55.0, 65.0, 25.0, 30.0)
    parts = [_crop_instance(full, t.window, 1, 0.5) for t in tiles][::-1]
    (m,) = merge_seam_duplicates(parts)
    assert np.array_equal(_paint(m, full.shape), full)


def test_small_object_in_overlap_merges_without_windows() -> None:
    # Same object predicted twice (slightly different masks), no window information.
    a = _rect(1, 40, 40, 10, 10, score=0.9)
    b = _rect(1, 41, 40, 10, 10, score=0.5)
    (m,) = merge_seam_duplicates([a, b])
    assert m.bbox == (40, 40, 51, 50) and m.area == 110 and m.n_tiles == 2
    assert m.score == pytest.approx(0.7)


def test_different_classes_overlapping_are_not_merged() -> None:
    a = _rect(1, 10, 10, 20, 20)
    b = _rect(2, 12, 12, 20, 20)
    out = merge_seam_duplicates([a, b])
    assert len(out) == 2 and not any(i.merged for i in out)
    assert {i.class_id for i in out} == {1, 2}


def test_disjoint_same_class_not_merged() -> None:
    a = _rect(1, 0, 0, 5, 5)
    b = _rect(1, 0, 5, 5, 5)  # touching edge, no shared pixel
    c = _rect(1, 50, 50, 5, 5)
    out = merge_seam_duplicates([a, b, c])
    assert out == [a, b, c]


def test_bbox_overlap_without_mask_overlap_not_merged() -> None:
    # Two diagonal ships: bboxes overlap heavily, masks do not touch.
    diag = np.eye(20, dtype=bool)
    a = Instance(1, 0.9, diag, 0, 0)
    b = Instance(1, 0.9, diag, 0, 1)
    assert len(merge_seam_duplicates([a, b])) == 2


def test_detections_of_one_tile_are_never_merged() -> None:
    # Dense scene: two objects in the same tile whose masks share one column (10 of 100 pixels). The
    # model's own NMS kept both, so even a low overlap threshold leaves them apart.
    win = (0, 0, 64, 64)
    a = _rect(1, 10, 10, 10, 10, window=win)
    b = _rect(1, 10, 19, 10, 10, window=win)
    assert len(merge_seam_duplicates([a, b])) == 2
    assert len(merge_seam_duplicates([a, b], overlap_threshold=0.1)) == 2
    b_from_next_tile = _rect(1, 10, 19, 10, 10, window=(0, 16, 64, 80))
    assert len(merge_seam_duplicates([a, b_from_next_tile], overlap_threshold=0.1)) == 1


def test_transitive_chain_is_one_group() -> None:
    a = _rect(1, 0, 0, 10, 10)
    b = _rect(1, 0, 6, 10, 10)
    c = _rect(1, 0, 12, 10, 10)  # overlaps b by 4 of 10 columns only: 0.4 of the smaller
    assert len(merge_seam_duplicates([a, c])) == 2
    out = merge_seam_duplicates([a, b, c], overlap_threshold=0.4)
    assert len(out) == 1 and out[0].n_tiles == 3 and out[0].bbox == (0, 0, 10, 22)


def test_empty_input() -> None:
    assert merge_seam_duplicates([]) == []


def test_invalid_threshold() -> None:
    with pytest.raises(ValueError, match="overlap_threshold"):
        merge_seam_duplicates([], overlap_threshold=0.0)


def _brute_force_groups(instances, threshold):
    n = len(instances)
    canv = [_paint(i, (64, 64)) for i in instances]
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if instances[i].class_id != instances[j].class_id:
                continue
            inter = np.count_nonzero(canv[i] & canv[j])
            if inter and inter >= threshold * min(canv[i].sum(), canv[j].sum()):
                parent[find(j)] = find(i)
    groups = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return sorted(sorted(g) for g in groups.values())


def test_sweep_prefilter_matches_brute_force() -> None:
    rs = np.random.RandomState(0)
    for _ in range(30):
        insts = []
        for _ in range(rs.randint(0, 25)):
            h, w = rs.randint(1, 15, size=2)
            r, c = rs.randint(0, 64 - 15, size=2)
            insts.append(Instance(int(rs.randint(1, 3)), 0.5, rs.rand(h, w) < 0.7, int(r), int(c)))
        out = merge_seam_duplicates(insts)
        expected = _brute_force_groups(insts, 0.5)
        assert len(out) == len(expected)
        want = sorted(int(sum(insts[i].n_tiles for i in g)) for g in expected)
        assert sorted(o.n_tiles for o in out) == want
        total = np.zeros((64, 64), dtype=int)
        for o in out:
            total += _paint(o, (64, 64))
        union = np.zeros((64, 64), dtype=bool)
        for i in insts:
            union |= _paint(i, (64, 64))
        assert np.array_equal(total > 0, union)
