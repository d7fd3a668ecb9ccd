"""Semantic class maps from COCO polygons, pixel metrics on hand-made confusion matrices, and COCO AP of
connected components."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.data.class_maps import CocoSemanticDataset, class_map
from engine.data.coco import CocoInstanceDataset
from engine.data.transforms import Compose, RandomFlip, training_transforms
from engine.evaluation.coco_eval import coco_metrics, ground_truth_coco
from engine.evaluation.semantic_eval import evaluate_semantic_model
from engine.evaluation.semantic_metrics import components_to_coco, confusion_matrix, semantic_scores
from engine.models.semantic.common import pad_batch
from engine.spec import IGNORE_INDEX, Normalisation
from tests.data.make_fixtures import object_polygon

H, W = 48, 64
# (kind, box (row0, col0, row1, col1) half-open, category id); the small class-2 box lies inside the big one and
# comes first in the file, so file order alone would paint it under the big one.
IMAGE_OBJECTS = [
    [("rect", (16, 20, 24, 32), 2), ("rect", (8, 8, 40, 48), 1), ("rect", (30, 52, 44, 60), 1)],
    [("rect", (4, 4, 12, 20), 2), ("rect", (20, 30, 36, 44), 1)],
]
# the same without the nested box: a class map can predict these instances exactly
SEPARATE_OBJECTS = [[("rect", (2, 2, 8, 14), 2), *IMAGE_OBJECTS[0][1:]], IMAGE_OBJECTS[1]]


def _write_coco(directory: Path, objects=IMAGE_OBJECTS, iscrowd_last: bool = False) -> Path:
    """PNG images H x W (objects bright) + a COCO file with one polygon per object."""
    directory.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for image_id, objs in enumerate(objects):
        pixels = np.full((H, W), 20, np.uint8)
        for _, (r0, c0, r1, c1), _ in objs:
            pixels[r0:r1, c0:c1] = 220
        Image.fromarray(pixels).save(directory / f"im{image_id}.png")
        images.append({"id": image_id, "file_name": f"im{image_id}.png", "height": H, "width": W})
        for kind, (r0, c0, r1, c1), cat in objs:
            anns.append({"id": len(anns), "image_id": image_id, "category_id": cat, "iscrowd": 0,
                         "segmentation": [object_polygon({"kind": kind, "box": (r0, c0, r1, c1)})],
                         "bbox": [c0, r0, c1 - c0, r1 - r0], "area": float((r1 - r0) * (c1 - c0))})
    path = directory / "coco.json"
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "ship"}, {"id": 2, "name": "tank"}]}))
    return path


def _expected_map(objs) -> np.ndarray:
    """Class map painted by hand: the big class-1 box, then everything inside it that is smaller."""
    expected = np.zeros((H, W), np.int64)
    for _, (r0, c0, r1, c1), cat in sorted(objs, key=lambda o: -(o[1][2] - o[1][0]) * (o[1][3] - o[1][1])):
        expected[r0:r1, c0:c1] = cat
    return expected


# ------------------------------------------------------------------------------------------------ class maps


def test_class_map_of_known_polygons_small_on_top(tmp_path) -> None:
    ds = CocoSemanticDataset(_write_coco(tmp_path), tmp_path, Normalisation())
    image, target = ds[0]
    semantic = target["semantic"]
    assert semantic.dtype == torch.int64 and semantic.shape == image.shape[1:] == (H, W)
    assert semantic[20, 25] == 2 and semantic[10, 10] == 1 and semantic[35, 55] == 1 and semantic[0, 0] == 0
    np.testing.assert_array_equal(semantic.numpy(), _expected_map(IMAGE_OBJECTS[0]))
    assert (semantic == 2).sum() == 8 * 12 and (semantic == 1).sum() == 32 * 40 - 8 * 12 + 14 * 8
    assert {"boxes", "labels", "masks", "image_id"} <= set(target) and target["labels"].tolist() == [2, 1, 1]
    np.testing.assert_array_equal(ds[1][1]["semantic"].numpy(), _expected_map(IMAGE_OBJECTS[1]))


def test_class_map_smallest_covering_instance_wins() -> None:
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(0, 5))
        masks = np.zeros((n, 12, 14), np.uint8)
        for k in range(n):
            r0, c0 = rng.integers(0, 10, 2)
            masks[k, r0:r0 + rng.integers(1, 9), c0:c0 + rng.integers(1, 9)] = 1
        labels = rng.integers(1, 4, n)
        got = class_map(masks, labels)
        areas = masks.sum(axis=(1, 2))
        for r in range(12):
            for c in range(14):
                covering = [k for k in range(n) if masks[k, r, c]]
                # smallest area wins; among equal areas the later instance (painted last)
                want = labels[min(covering, key=lambda k: (areas[k], -k))] if covering else 0
                assert got[r, c] == want
    with pytest.raises(ValueError):
        class_map(np.zeros((2, 4, 4), np.uint8), np.array([1]))


def test_class_map_follows_the_augmentations_and_padding_is_ignored(tmp_path) -> None:
    coco = _write_coco(tmp_path)
    plain = CocoSemanticDataset(coco, tmp_path, Normalisation())
    flipped = CocoSemanticDataset(coco, tmp_path, Normalisation(),
                                  transforms=Compose([RandomFlip(p=1.0, rng=np.random.default_rng(0))]))
    np.testing.assert_array_equal(flipped[0][1]["semantic"].numpy(), plain[0][1]["semantic"].numpy()[::-1, ::-1])
    np.random.seed(0)
    augmented = CocoSemanticDataset(coco, tmp_path, Normalisation(), transforms=training_transforms(32, 0.7, 1.3))
    for _ in range(6):
        image, target = augmented[0]
        semantic = target["semantic"]
        assert semantic.shape == image.shape[1:] and max(image.shape[1:]) <= 32
        assert set(semantic.unique().tolist()) <= {0, 1, 2}  # the transforms never pad: no ignored pixels
        np.testing.assert_array_equal(semantic.numpy(), class_map(target["masks"].numpy(), target["labels"].numpy()))
        bright = image[0] > 0  # objects are bright: the class map moved with the image
        assert ((semantic > 0) == bright).float().mean() > 0.9
    # a batch padded for the model: padded pixels are IGNORE_INDEX, the rest the class maps
    items = [augmented[0], plain[1]]
    _, target_map, sizes = pad_batch([im for im, _ in items], [t for _, t in items])
    for k, (h, w) in enumerate(sizes):
        assert torch.equal(target_map[k, :h, :w], items[k][1]["semantic"])
        assert (target_map[k, h:] == IGNORE_INDEX).all() and (target_map[k, :, w:] == IGNORE_INDEX).all()


# --------------------------------------------------------------------------------------------------- metrics


def test_confusion_matrix_counts_and_ignores() -> None:
    truth = np.array([[0, 0, 1], [1, 2, IGNORE_INDEX]])
    prediction = np.array([[0, 1, 1], [2, 2, 0]])
    np.testing.assert_array_equal(confusion_matrix(truth, prediction, 3), [[1, 1, 0], [0, 1, 1], [0, 0, 1]])
    with pytest.raises(ValueError):
        confusion_matrix(truth, prediction[:, :2], 3)
    with pytest.raises(ValueError):
        confusion_matrix(np.array([3]), np.array([0]), 3)


def test_semantic_scores_of_a_hand_made_confusion_matrix() -> None:
    confusion = np.array([[50, 5, 5], [10, 20, 0], [0, 0, 10]])  # rows truth, columns prediction
    s = semantic_scores(confusion, ["background", "ship", "tank"])
    iou = [50 / 70, 20 / 35, 10 / 15]
    f1 = [100 / 120, 40 / 55, 20 / 25]
    for name, i, f in zip(["background", "ship", "tank"], iou, f1):
        assert s["per_class"][name]["IoU"] == pytest.approx(100 * i, abs=0.01)
        assert s["per_class"][name]["F1"] == pytest.approx(100 * f, abs=0.01)
    assert s["mIoU"] == pytest.approx(100 * np.mean(iou), abs=0.01)
    assert s["mIoU_no_bg"] == pytest.approx(100 * np.mean(iou[1:]), abs=0.01)
    assert s["mF1"] == pytest.approx(100 * np.mean(f1), abs=0.01)
    assert s["mF1_no_bg"] == pytest.approx(100 * np.mean(f1[1:]), abs=0.01)
    assert s["OA"] == 80.0
    # a class absent from truth and prediction is undefined and left out of the means
    padded = np.zeros((4, 4), int)
    padded[:3, :3] = confusion
    s4 = semantic_scores(padded, ["background", "ship", "tank", "car"])
    assert s4["per_class"]["car"] == {"IoU": None, "F1": None}
    assert (s4["mIoU"], s4["mIoU_no_bg"], s4["OA"]) == (s["mIoU"], s["mIoU_no_bg"], s["OA"])
    empty = semantic_scores(np.zeros((2, 2), int), ["background", "ship"])
    assert empty["mIoU"] is None and empty["OA"] is None
    with pytest.raises(ValueError):
        semantic_scores(confusion, ["background", "ship"])


def test_semantic_scores_match_set_definitions_on_random_maps() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        labels = int(rng.integers(2, 5))
        truth = rng.integers(0, labels, (9, 11))
        truth[rng.random((9, 11)) < 0.1] = IGNORE_INDEX
        prediction = rng.integers(0, labels, (9, 11))
        s = semantic_scores(confusion_matrix(truth, prediction, labels), [f"c{k}" for k in range(labels)])
        valid = truth != IGNORE_INDEX
        for k in range(labels):
            t, p = (truth == k) & valid, (prediction == k) & valid
            union = (t | p).sum()
            want = None if union == 0 else round(100 * (t & p).sum() / union, 2)
            assert s["per_class"][f"c{k}"]["IoU"] == want
        assert s["OA"] == round(100 * (truth == prediction)[valid].mean(), 2)


# ------------------------------------------------------------------------------------------ component AP


def _one_hot_probs(semantic: np.ndarray, labels: int, confidence: float = 0.9) -> np.ndarray:
    """Class map [H,W] -> probabilities [labels,H,W] with `confidence` on the given class."""
    probs = np.full((labels, *semantic.shape), (1 - confidence) / (labels - 1), np.float32)
    np.put_along_axis(probs, semantic[None], confidence, axis=0)
    return probs


def test_components_are_4_connected_like_the_polygons_and_scored_by_mean_probability() -> None:
    semantic = np.zeros((10, 12), np.int64)
    semantic[1:3, 1:3] = 1
    semantic[3:5, 3:5] = 1  # touches the first square only at a corner: its own component, as in the polygons
    semantic[7:9, 8:11] = 1
    semantic[1:4, 8:10] = 2
    probs = _one_hot_probs(semantic, 3, 0.6)
    probs[1, 7:9, 8:11] = [[0.6, 0.7, 0.8], [0.9, 0.6, 0.6]]
    results = components_to_coco(5, probs)
    assert [(r["category_id"], r["bbox"]) for r in results] == [
        (1, [1.0, 1.0, 2.0, 2.0]), (1, [3.0, 3.0, 2.0, 2.0]), (1, [8.0, 7.0, 3.0, 2.0]), (2, [8.0, 1.0, 2.0, 3.0])]
    assert [r["score"] for r in results] == pytest.approx([0.6, 0.6, 0.7, 0.6])
    assert all(r["image_id"] == 5 for r in results)
    assert components_to_coco(1, _one_hot_probs(np.zeros((6, 6), np.int64), 3)) == []


def test_component_ap_is_100_for_a_perfect_prediction_and_drops_for_a_wrong_one(tmp_path) -> None:
    ds = CocoInstanceDataset(_write_coco(tmp_path, SEPARATE_OBJECTS), tmp_path, Normalisation())
    gt = ground_truth_coco(ds)
    maps = [_expected_map(objs) for objs in SEPARATE_OBJECTS]
    perfect = [r for i, m in enumerate(maps) for r in components_to_coco(i + 1, _one_hot_probs(m, 3))]
    metrics = coco_metrics(gt, perfect)
    assert metrics["segm"]["AP"] == 100.0 and metrics["bbox"]["AP"] == 100.0
    swapped = [r for i, m in enumerate(maps)  # classes 1 and 2 exchanged
               for r in components_to_coco(i + 1, _one_hot_probs(np.where(m > 0, 3 - m, 0), 3))]
    assert coco_metrics(gt, swapped)["segm"]["AP"] < 50.0
    shifted = [r for i, m in enumerate(maps) for r in components_to_coco(i + 1, _one_hot_probs(np.roll(m, 6, 1), 3))]
    assert coco_metrics(gt, shifted)["segm"]["AP"] < metrics["segm"]["AP"]


class _MapModel(torch.nn.Module):
    """Eval-mode semantic model that returns fixed class maps as probabilities, one per call."""

    def __init__(self, maps: list[np.ndarray]) -> None:
        super().__init__()
        self.maps, self.calls = maps, 0

    def forward(self, images):
        probs = torch.from_numpy(_one_hot_probs(self.maps[self.calls], 3))
        assert images[0].shape[1:] == probs.shape[1:]
        self.calls += 1
        return [{"probs": probs}]


def test_evaluate_semantic_model_perfect_and_all_background(tmp_path) -> None:
    ds = CocoInstanceDataset(_write_coco(tmp_path / "separate", SEPARATE_OBJECTS), tmp_path / "separate",
                             Normalisation())
    maps = [_expected_map(objs) for objs in SEPARATE_OBJECTS]
    seen: list[tuple[int, int]] = []
    metrics = evaluate_semantic_model(_MapModel(maps), ds, progress=lambda d, t: seen.append((d, t)))
    assert metrics["semantic"]["mIoU"] == metrics["semantic"]["OA"] == metrics["semantic"]["mF1"] == 100.0
    assert set(metrics["semantic"]["per_class"]) == {"background", "ship", "tank"}
    assert metrics["segm"]["AP"] == 100.0 and metrics["bbox"]["AP"] == 100.0
    assert metrics["images"] == 2 and metrics["seconds_per_image"] >= 0 and seen == [(1, 2), (2, 2)]
    background = evaluate_semantic_model(_MapModel([np.zeros_like(m) for m in maps]), ds)
    assert background["semantic"]["mIoU_no_bg"] == 0.0 and background["segm"]["AP"] == 0.0
    fg = sum((m > 0).sum() for m in maps)
    assert background["semantic"]["OA"] == pytest.approx(100 * (1 - fg / (2 * H * W)), abs=0.01)
    # nested instances: the class map is exact, but the big instance's component has a hole (IoU 0.925)
    nested = CocoInstanceDataset(_write_coco(tmp_path / "nested"), tmp_path / "nested", Normalisation())
    metrics = evaluate_semantic_model(_MapModel([_expected_map(objs) for objs in IMAGE_OBJECTS]), nested)
    assert metrics["semantic"]["mIoU"] == 100.0 and 50.0 < metrics["segm"]["AP"] < 100.0
