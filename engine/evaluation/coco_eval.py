"""COCO bbox and segm AP through pycocotools, and the instance evaluator built on them.

Ids are renumbered from 1 (images by position, annotations by position, categories to labels 1..K):
COCOeval never matches a ground truth whose id is 0, which the published SSDD/NWPU files contain.
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from engine.data.coco import CocoInstanceDataset
from engine.evaluation.loop import EvalInput, inference_on_dataset
from engine.evaluation.operating_point import coco_operating_points

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def ground_truth_coco(dataset: CocoInstanceDataset) -> COCO:
    """In-memory COCO with ids starting at 1 and labels 1..K as category ids."""
    index, label_of = dataset.index, dataset.index.label_of
    images, anns = [], []
    for i, info in enumerate(index.images):
        images.append({"id": i + 1, "width": info["width"], "height": info["height"], "file_name": info["file_name"]})
        for a in index.annotations.get(info["id"], []):
            anns.append({
                "id": len(anns) + 1, "image_id": i + 1, "category_id": label_of[a["category_id"]],
                "segmentation": a["segmentation"], "area": float(a.get("area") or a["bbox"][2] * a["bbox"][3]),
                "bbox": [float(v) for v in a["bbox"]], "iscrowd": int(a.get("iscrowd", 0)),
            })
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(index.category_names)]
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": cats}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def detections_to_coco(image_id: int, output: dict[str, torch.Tensor], mask_threshold: float = 0.5) -> list[dict]:
    """One image's model output -> COCO result dicts (bbox xywh and RLE segmentation)."""
    results = []
    boxes = output["boxes"].cpu().numpy()
    masks = (output["masks"][:, 0] >= mask_threshold).cpu().numpy().astype(np.uint8)
    for box, label, score, m in zip(boxes, output["labels"].tolist(), output["scores"].tolist(), masks):
        rle = mask_utils.encode(np.asfortranarray(m))
        rle["counts"] = rle["counts"].decode("ascii")
        x0, y0, x1, y1 = (float(v) for v in box)
        results.append({"image_id": image_id, "category_id": int(label), "score": float(score),
                        "bbox": [x0, y0, x1 - x0, y1 - y0], "segmentation": rle})
    return results


def coco_metrics(gt: COCO, results: list[dict]) -> dict[str, dict[str, float]]:
    """{"bbox": {"AP": .., ...}, "segm": {...}} in percent; zeros without detections, None for empty size ranges."""
    out: dict[str, dict[str, float]] = {}
    for iou_type in ("bbox", "segm"):
        if not results:
            out[iou_type] = dict.fromkeys(METRIC_NAMES, 0.0)
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes(results)
            ev = COCOeval(gt, dt, iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        # pycocotools reports -1 where no ground truth falls in a size range: keep that as None (n/a)
        out[iou_type] = {
            n: (round(float(v) * 100.0, 2) if v >= 0 else None) for n, v in zip(METRIC_NAMES, ev.stats[:6])
        }
    return out


class CocoEvaluator:
    """Instance evaluator (reset / process / evaluate): COCO bbox and segm AP of the detections.

    Outputs per image: {"boxes" [N,4] xyxy, "labels" [N] in 1..K, "scores" [N], "masks" [N,1,H,W] prob}.
    """

    def __init__(self, dataset: CocoInstanceDataset, mask_threshold: float = 0.5) -> None:
        self.gt = ground_truth_coco(dataset)
        self.mask_threshold = mask_threshold
        self.results: list[dict] = []

    def reset(self) -> None:
        self.results = []

    def process(self, inputs: list[EvalInput], outputs: list[dict[str, torch.Tensor]]) -> None:
        for inp, output in zip(inputs, outputs):
            self.results.extend(detections_to_coco(inp.image_id, output, self.mask_threshold))

    def evaluate(self) -> dict[str, Any]:
        """{"bbox": {"AP", ...}, "segm": {...}} in percent (see coco_metrics), and "objects": object
        precision/recall/F1 against the score threshold (engine.evaluation.operating_point)."""
        return {**coco_metrics(self.gt, self.results), "objects": coco_operating_points(self.gt, self.results)}


def evaluate_model(
    model: torch.nn.Module,
    dataset: CocoInstanceDataset,
    device: torch.device | str = "cpu",
    progress: Callable[[int, int], None] | None = None,
    input_scale: float = 1.0,
) -> dict[str, Any]:
    """COCO metrics of an instance `model` on every image of `dataset` (engine.evaluation.loop; each image
    resized by `input_scale`, the model's trained zoom, and its output mapped back).

    Returns {"bbox": {...}, "segm": {...}, "images": n, "seconds_per_image": s}.
    """
    return inference_on_dataset(model, dataset, CocoEvaluator(dataset), device, progress, input_scale)
