"""Semantic segmentation metrics (pure numpy) and COCO instances from a class-probability map.

- `confusion_matrix(truth, prediction, num_labels)`: [L,L] pixel counts (rows truth, columns prediction),
  IGNORE_INDEX pixels of the truth excluded; summed over a whole data set before scoring.
- `semantic_scores(confusion, names)`: per-class IoU = TP/(TP+FP+FN) and F1 = 2TP/(2TP+FP+FN), their means
  with background (label 0) and without it, overall accuracy; all in percent.
- `components_to_coco(image_id, probs)`: each 4-connected component of the argmax map, per foreground class
  (the connectivity of the polygons engine.vector.components writes),
  becomes one COCO result scored by the mean probability of its class inside it, so semantic models are
  ranked by the same COCO mask/box AP as the instance models (engine.evaluation.coco_eval.coco_metrics).
"""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils
from scipy import ndimage

from engine.spec import IGNORE_INDEX

FOUR_CONNECTED = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)  # as the written polygons


def confusion_matrix(truth: np.ndarray, prediction: np.ndarray, num_labels: int) -> np.ndarray:
    """Truth and prediction [H,W] in 0..num_labels-1 (truth may hold IGNORE_INDEX) -> int64 [L,L].

    Entry [t, p] counts pixels of true label t predicted as p; ignored pixels are left out.
    """
    if truth.shape != prediction.shape:
        raise ValueError(f"truth {truth.shape} and prediction {prediction.shape} differ in shape")
    valid = truth != IGNORE_INDEX
    t = truth[valid].astype(np.int64)
    p = prediction[valid].astype(np.int64)
    if t.size and (t.min() < 0 or t.max() >= num_labels or p.min() < 0 or p.max() >= num_labels):
        raise ValueError(f"labels outside 0..{num_labels - 1} (besides IGNORE_INDEX {IGNORE_INDEX})")
    return np.bincount(t * num_labels + p, minlength=num_labels * num_labels).reshape(num_labels, num_labels)


def _percent(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value) * 100.0, 2)


def _mean(values: np.ndarray) -> float | None:
    """Mean (percent) over the defined values (NaN = undefined); None when none is defined."""
    defined = values[~np.isnan(values)]
    return _percent(float(defined.mean())) if defined.size else None


def semantic_scores(confusion: np.ndarray, class_names: list[str]) -> dict:
    """[L,L] confusion matrix (label 0 = background) and L names -> metrics in percent.

    {"mIoU", "mIoU_no_bg", "mF1", "mF1_no_bg", "OA", "per_class": {name: {"IoU", "F1"}}}. Means without
    "_no_bg" are over all labels, "_no_bg" ones over the foreground labels 1..K. A class that is neither in
    the truth nor predicted (TP+FP+FN = 0) has IoU/F1 None and is left out of the means.
    """
    confusion = np.asarray(confusion, np.float64)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1] or confusion.shape[0] != len(class_names):
        raise ValueError(f"confusion {confusion.shape} does not match {len(class_names)} class names")
    tp = np.diag(confusion)
    fp = confusion.sum(axis=0) - tp
    fn = confusion.sum(axis=1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)
        f1 = np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    total = confusion.sum()
    return {
        "mIoU": _mean(iou),
        "mIoU_no_bg": _mean(iou[1:]),
        "mF1": _mean(f1),
        "mF1_no_bg": _mean(f1[1:]),
        "OA": _percent(tp.sum() / total) if total else None,
        "per_class": {name: {"IoU": _percent(iou[k]), "F1": _percent(f1[k])} for k, name in enumerate(class_names)},
    }


def components_to_coco(image_id: int, probs: np.ndarray) -> list[dict]:
    """Class probabilities [K+1,H,W] -> COCO results (bbox xywh, RLE segmentation, score, category 1..K).

    One result per 4-connected component of each foreground class in the argmax map; its score is the
    mean probability of that class over the component's pixels.
    """
    prediction = probs.argmax(axis=0)
    results = []
    for label in range(1, probs.shape[0]):
        components, count = ndimage.label(prediction == label, structure=FOUR_CONNECTED)
        if not count:
            continue
        scores = ndimage.mean(probs[label], components, index=np.arange(1, count + 1))
        for k, (rows, cols) in enumerate(ndimage.find_objects(components)):
            mask = np.zeros(prediction.shape, np.uint8)
            mask[rows, cols] = components[rows, cols] == k + 1
            rle = mask_utils.encode(np.asfortranarray(mask))
            rle["counts"] = rle["counts"].decode("ascii")
            bbox = [float(cols.start), float(rows.start), float(cols.stop - cols.start), float(rows.stop - rows.start)]
            results.append({"image_id": image_id, "category_id": label, "score": float(scores[k]),
                            "bbox": bbox, "segmentation": rle})
    return results
