"""Object precision, recall and F1 against the score threshold: where to set a model's threshold.

COCO AP ranks a model over every threshold; an analyst gets one: the spec's `score_threshold`, which
`segment` applies. Here each image's detections are matched one-to-one to its ground truth, per class, in
descending score order at mask IoU >= `iou` (the same rule as `rsseg score` on polygons), and the matches
are counted above each candidate threshold. The best threshold is the one of the highest F1 (the lowest
such threshold on ties: more objects found for the same F1).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))  # 0.05, 0.10, ..., 0.95


@dataclass(frozen=True)
class OperatingPoint:
    """Object counts and rates of the detections scoring >= `threshold` (precision/recall/F1 in 0..1)."""

    threshold: float
    precision: float
    recall: float
    f1: float
    true_positives: int
    false_positives: int
    false_negatives: int


def match_scores(scores: Sequence[float], iou: np.ndarray, iou_threshold: float = 0.5) -> list[bool]:
    """One-to-one matching of detections to ground truth in descending score order.

    scores: [D] detection scores; iou: [D, G] IoU of each detection with each ground-truth object.
    Each detection, best score first, takes the still-unmatched ground truth of highest IoU if that IoU is
    >= `iou_threshold`. Returns [D] booleans in the order of `scores`: True where the detection matched.
    """
    if not len(scores):
        return []
    iou = np.asarray(iou, dtype=np.float64).reshape(len(scores), -1)
    taken = np.zeros(iou.shape[1], dtype=bool)
    matched = [False] * len(scores)
    for d in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"):
        if not iou.shape[1]:
            break
        candidates = np.where(taken, -1.0, iou[d])
        g = int(np.argmax(candidates))
        if candidates[g] >= iou_threshold:
            taken[g] = True
            matched[d] = True
    return matched


def operating_points(scores: Sequence[float], matched: Sequence[bool], truths: int,
                     thresholds: Sequence[float] = THRESHOLDS) -> list[OperatingPoint]:
    """Precision, recall and F1 of the detections scoring >= each threshold, given which of them matched
    (`match_scores`, pooled over images and classes) and the number of ground-truth objects."""
    scores_arr = np.asarray(scores, dtype=np.float64)
    matched_arr = np.asarray(matched, dtype=bool)
    points = []
    for t in thresholds:
        kept = scores_arr >= t
        tp = int(np.count_nonzero(matched_arr & kept))
        fp = int(np.count_nonzero(kept)) - tp
        fn = truths - tp
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / truths if truths else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        points.append(OperatingPoint(float(t), round(precision, 4), round(recall, 4), round(f1, 4), tp, fp, fn))
    return points


def best_point(points: Sequence[OperatingPoint]) -> OperatingPoint:
    """The point of the highest F1; the lowest threshold among equals."""
    return max(points, key=lambda p: (p.f1, -p.threshold))


def coco_operating_points(gt: COCO, results: list[dict], iou_threshold: float = 0.5) -> dict[str, Any]:
    """Object P/R/F1 curve of COCO-format mask `results` against `gt` (crowd regions are neither counted
    nor matched). -> {"iou": .., "best": {threshold, precision, ...}, "curve": [{...}, ...]}."""
    by_key: dict[tuple[int, int], list[dict]] = {}
    for r in results:
        by_key.setdefault((r["image_id"], r["category_id"]), []).append(r)
    truths, scores, matched = 0, [], []
    for image_id in gt.getImgIds():
        anns = [a for a in gt.loadAnns(gt.getAnnIds(imgIds=[image_id])) if not a.get("iscrowd", 0)]
        truths += len(anns)
        for category in {a["category_id"] for a in anns} | {c for (i, c) in by_key if i == image_id}:
            dets = by_key.get((image_id, category), [])
            if not dets:
                continue
            truth = [gt.annToRLE(a) for a in anns if a["category_id"] == category]
            iou = (np.asarray(mask_utils.iou([d["segmentation"] for d in dets], truth, [0] * len(truth)))
                   if truth else np.zeros((len(dets), 0)))
            det_scores = [d["score"] for d in dets]
            scores.extend(det_scores)
            matched.extend(match_scores(det_scores, iou, iou_threshold))
    points = operating_points(scores, matched, truths)
    return {"iou": iou_threshold, "best": asdict(best_point(points)), "curve": [asdict(p) for p in points]}


def operating_point_table(objects: dict[str, Any], model_threshold: float | None = None) -> str:
    """A short text table: F1-best threshold, the model's own threshold and a few thresholds around them."""
    best = objects["best"]
    shown = {round(t, 2) for t in (0.3, 0.5, 0.7, 0.9)} | {best["threshold"]}
    if model_threshold is not None:
        shown.add(round(model_threshold, 2))
    lines = [f"objects at mask IoU >= {objects['iou']:g} (one-to-one, per class):",
             f"{'score >=':>10}{'P':>8}{'R':>8}{'F1':>8}"]
    for p in objects["curve"]:
        if round(p["threshold"], 2) in shown:
            marks = [m for m, on in (("best F1", p["threshold"] == best["threshold"]),
                                     ("model's", model_threshold is not None
                                      and round(p["threshold"], 2) == round(model_threshold, 2))) if on]
            lines.append(f"{p['threshold']:>10.2f}{p['precision']:>8.3f}{p['recall']:>8.3f}{p['f1']:>8.3f}"
                         + (f"  <- {', '.join(marks)}" if marks else ""))
    return "\n".join(lines)
