"""One tile's nested duplicates: a detection of half an object inside a stronger detection of all of it."""

import numpy as np
import pytest

from engine.merge import Instance, suppress_nested_duplicates
from engine.merge.seams import NESTED_MIN_AREA_RATIO


def _rect(class_id: int, r0: int, c0: int, h: int, w: int, score: float) -> Instance:
    return Instance(class_id, score, np.ones((h, w), dtype=bool), r0, c0, window=(0, 0, 100, 100))


def _nested(a: Instance, b: Instance, containment: float = 0.8) -> bool:
    """Whether `a` is a nested duplicate of `b`: |a & b| / |a| >= containment and |a| >= ratio * |b|,
    computed by painting both on a canvas (independent of the function under test)."""
    canvas_a, canvas_b = np.zeros((200, 200), bool), np.zeros((200, 200), bool)
    for inst, canvas in ((a, canvas_a), (b, canvas_b)):
        r0, c0, r1, c1 = inst.bbox
        canvas[r0:r1, c0:c1] = inst.mask
    inside = np.count_nonzero(canvas_a & canvas_b) / max(1, a.area)
    return a.class_id == b.class_id and inside >= containment and a.area >= NESTED_MIN_AREA_RATIO * b.area


def test_half_ship_inside_the_whole_ship_is_dropped() -> None:
    whole = _rect(1, 10, 10, 8, 40, score=0.95)
    half = _rect(1, 10, 10, 8, 20, score=0.6)  # box IoU 0.5: the model's box NMS keeps both
    assert suppress_nested_duplicates([half, whole]) == [whole]


def test_neighbours_side_by_side_and_other_classes_are_kept() -> None:
    ship = _rect(1, 10, 10, 8, 40, score=0.95)
    touching = _rect(1, 16, 10, 8, 40, score=0.9)  # overlaps by 2 of its 8 rows: 25%
    other_class = _rect(2, 10, 10, 8, 20, score=0.6)
    assert suppress_nested_duplicates([ship, touching, other_class]) == [ship, touching, other_class]


def test_a_weaker_larger_detection_around_a_ship_is_kept() -> None:
    """Only the weaker detection's own area counts: a vague blob around a ship is mostly outside it."""
    ship = _rect(1, 20, 20, 6, 10, score=0.9)
    blob = _rect(1, 10, 10, 30, 30, score=0.5)
    assert suppress_nested_duplicates([ship, blob]) == [ship, blob]


def test_small_objects_inside_a_stronger_blob_over_their_cluster_are_kept() -> None:
    """A storage tank (6 x 6) inside a stronger detection covering its whole cluster (30 x 30) is an
    object of its own, not a part: it covers 4% of the blob, below NESTED_MIN_AREA_RATIO."""
    blob = _rect(1, 10, 10, 30, 30, score=0.9)
    tanks = [_rect(1, 12, 12, 6, 6, score=0.7), _rect(1, 30, 30, 6, 6, score=0.6)]
    assert suppress_nested_duplicates([blob, *tanks]) == [blob, *tanks]


def test_disabled_keeps_everything() -> None:
    whole, half = _rect(1, 10, 10, 8, 40, 0.95), _rect(1, 10, 10, 8, 20, 0.6)
    assert suppress_nested_duplicates([whole, half], None) == [whole, half]


@pytest.mark.parametrize("seed", range(20))
def test_kept_set_properties(seed: int) -> None:
    """Random rectangles: the result is an ordered subset holding the best detection; no kept instance
    lies inside a stronger kept one of its class beyond the threshold, and every dropped one does."""
    rng = np.random.default_rng(seed)
    found = [_rect(int(rng.integers(1, 3)), int(rng.integers(0, 60)), int(rng.integers(0, 60)),
                   int(rng.integers(2, 30)), int(rng.integers(2, 30)), float(rng.uniform(0.05, 1)))
             for _ in range(int(rng.integers(1, 25)))]
    kept = suppress_nested_duplicates(found, 0.8)
    position = {id(inst): k for k, inst in enumerate(found)}
    positions = [position[id(k)] for k in kept]
    assert positions == sorted(positions)
    kept_ids = {id(k) for k in kept}
    assert id(max(found, key=lambda i: i.score)) in kept_ids
    for a in kept:
        assert not any(_nested(a, b) for b in kept if b.score > a.score)
    for a in found:
        if id(a) not in kept_ids:
            assert any(_nested(a, b) for b in kept if b.score >= a.score)


def test_segment_writes_one_polygon_per_object_despite_a_half_detection(tmp_path) -> None:
    """End to end: a model that also reports the left half of every object (score 0.6, box IoU 0.5 with
    the whole: its NMS would keep both) still gives one polygon per object; with suppression off, two."""
    import fiona

    from engine.inference.segment import SegmentOptions, segment_raster
    from tests.data.make_fixtures import write_scene_geotiff
    from tests.engine.test_segment import OraclePredictor

    class HalfDuplicating(OraclePredictor):
        def predict(self, images):
            outs = super().predict(images)
            for out in outs:
                halves = out["masks"].copy()
                for half in halves:
                    cols = np.flatnonzero(half.any(axis=0))
                    if cols.size:
                        half[:, cols[0] + (cols[-1] + 1 - cols[0]) // 2:] = 0
                n = len(halves)
                out["masks"] = np.concatenate([out["masks"], halves])
                out["scores"] = np.concatenate([out["scores"], np.full(n, 0.6, np.float32)])
                out["labels"] = np.concatenate([out["labels"], out["labels"]])
                out["boxes"] = np.concatenate([out["boxes"], out["boxes"]])
            return outs

    raster = tmp_path / "scene.tif"
    objects = [{"kind": "ellipse", "box": (20, 20, 40, 80), "class_id": 1},
               {"kind": "ellipse", "box": (150, 160, 170, 220), "class_id": 1}]
    write_scene_geotiff(raster, objects=objects)
    for containment, expected in ((0.8, 2), (None, 4)):
        out = tmp_path / f"out_{containment}.gpkg"
        result = segment_raster(raster, out, HalfDuplicating(),
                                SegmentOptions(tile_size=256, overlap=0, duplicate_containment=containment))
        assert result.features == expected
        with fiona.open(out) as layer:
            assert sorted(f["properties"]["score"] for f in layer)[-1] == pytest.approx(0.9)
