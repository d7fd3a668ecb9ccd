"""Object precision / recall / F1 against the score threshold (engine.evaluation.operating_point)."""

import contextlib
import io

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from engine.evaluation.operating_point import (
    OperatingPoint,
    best_point,
    coco_operating_points,
    match_scores,
    operating_point_table,
    operating_points,
)


def test_matching_goes_in_score_order_and_is_one_to_one() -> None:
    # two detections on one truth: the higher score takes it even though the other overlaps it more
    assert match_scores([0.8, 0.9], np.array([[0.9], [0.6]])) == [False, True]
    # two truths: each detection gets its own
    assert match_scores([0.9, 0.8], np.array([[0.7, 0.6], [0.2, 0.8]])) == [True, True]
    # the best remaining truth is under the IoU threshold: no match
    assert match_scores([0.9, 0.8], np.array([[0.7, 0.3], [0.8, 0.4]])) == [True, False]
    assert match_scores([0.5], np.array([[0.49]]), iou_threshold=0.5) == [False]
    assert match_scores([0.5, 0.4], np.zeros((2, 0))) == [False, False]
    assert match_scores([], np.zeros((0, 3))) == []


def test_operating_points_count_the_detections_above_each_threshold() -> None:
    points = operating_points([0.9, 0.6, 0.3], [True, False, True], truths=4, thresholds=(0.2, 0.5, 0.95))
    low, mid, high = points
    assert (low.true_positives, low.false_positives, low.false_negatives) == (2, 1, 2)
    assert low.precision == pytest.approx(2 / 3, abs=1e-4) and low.recall == 0.5
    assert low.f1 == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5), abs=1e-4)
    assert (mid.true_positives, mid.false_positives, mid.false_negatives) == (1, 1, 3)
    assert (high.true_positives, high.false_positives, high.precision, high.f1) == (0, 0, 0.0, 0.0)
    assert operating_points([], [], truths=0, thresholds=(0.5,))[0].f1 == 0.0


def test_best_point_takes_the_highest_f1_and_the_lowest_threshold_of_a_tie() -> None:
    def point(t: float, f1: float) -> OperatingPoint:
        return OperatingPoint(t, 0.0, 0.0, f1, 0, 0, 0)

    assert best_point([point(0.3, 0.5), point(0.5, 0.7), point(0.7, 0.6)]).threshold == 0.5
    assert best_point([point(0.7, 0.6), point(0.4, 0.6), point(0.6, 0.6)]).threshold == 0.4


def _square(x: int, y: int, side: int, size: int = 64) -> dict:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[y:y + side, x:x + side] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _truth() -> COCO:
    def ann(i: int, image: int, cat: int, x: int, y: int, crowd: int = 0) -> dict:
        poly = [x, y, x + 10, y, x + 10, y + 10, x, y + 10]
        return {"id": i, "image_id": image, "category_id": cat, "segmentation": [poly], "area": 100.0,
                "bbox": [x, y, 10, 10], "iscrowd": crowd}

    coco = COCO()
    coco.dataset = {"images": [{"id": 1, "width": 64, "height": 64}, {"id": 2, "width": 64, "height": 64}],
                    "categories": [{"id": 1, "name": "ship"}, {"id": 2, "name": "tank"}],
                    "annotations": [ann(1, 1, 1, 0, 0), ann(2, 1, 1, 30, 30), ann(3, 2, 2, 5, 5),
                                    ann(4, 2, 1, 40, 40, crowd=1)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def test_coco_operating_points_on_hand_made_masks() -> None:
    def det(image: int, cat: int, score: float, rle: dict) -> dict:
        return {"image_id": image, "category_id": cat, "score": score, "segmentation": rle}

    results = [
        det(1, 1, 0.9, _square(0, 0, 10)),    # exact: a hit
        det(1, 1, 0.8, _square(35, 35, 10)),  # IoU 25/175 with its truth: a false alarm
        det(1, 1, 0.7, _square(0, 0, 10)),    # a duplicate of the first: a false alarm
        det(2, 1, 0.95, _square(5, 5, 10)),   # on the tank, but called a ship: a false alarm
        det(2, 2, 0.6, _square(6, 5, 10)),    # the tank, IoU 90/110: a hit
    ]
    objects = coco_operating_points(_truth(), results)
    curve = {p["threshold"]: p for p in objects["curve"]}
    assert (curve[0.5]["true_positives"], curve[0.5]["false_positives"], curve[0.5]["false_negatives"]) == (2, 3, 1)
    assert curve[0.85]["true_positives"] == 1 and curve[0.85]["false_positives"] == 1  # the crowd truth is not counted
    assert curve[0.5]["recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert objects["best"]["threshold"] == 0.05 and objects["best"]["f1"] == pytest.approx(0.5, abs=1e-4)
    assert objects["iou"] == 0.5
    # nothing detected: every point has zero recall, and all truths are misses
    empty = coco_operating_points(_truth(), [])
    assert all(p["recall"] == 0 and p["false_negatives"] == 3 for p in empty["curve"])


def test_table_marks_the_best_and_the_models_threshold() -> None:
    points = operating_points([0.9, 0.6, 0.3], [True, False, True], truths=2)
    objects = {"iou": 0.5, "best": vars(best_point(points)), "curve": [vars(p) for p in points]}
    table = operating_point_table(objects, model_threshold=0.5)
    best_line = next(line for line in table.splitlines() if "best F1" in line)
    assert best_line.split()[0] == f"{objects['best']['threshold']:.2f}"
    assert any("model's" in line and line.split()[0] == "0.50" for line in table.splitlines())


def test_ship_model_takes_the_validation_best_threshold_or_a_value() -> None:
    import argparse

    from scripts.ship_model import chosen_threshold

    parser = argparse.ArgumentParser()
    val = {"objects": {"best": {"threshold": 0.35}}}
    assert chosen_threshold("best", val, parser) == 0.35
    assert chosen_threshold("0.6", val, parser) == 0.6
    for wrong, metrics in (("1.5", val), ("high", val), ("best", {"semantic": {}})):
        with pytest.raises(SystemExit):
            chosen_threshold(wrong, metrics, parser)
