"""Evaluate a semantic model on a COCO data set: pixel metrics and COCO AP of its connected components.

The result keeps the instance evaluator's layout ("segm"/"bbox" AP, "images", "seconds_per_image") and
adds "semantic" (mIoU, F1, OA), so the trainer, the CLI and reports read both kinds of model alike.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from engine.data.coco import CocoInstanceDataset
from engine.evaluation.coco_eval import coco_metrics, ground_truth_coco
from engine.models.scaling import forward_scaled
from engine.normalise import normalise
from engine.semantic.data import class_map
from engine.semantic.metrics import components_to_coco, confusion_matrix, semantic_scores


@torch.no_grad()
def evaluate_semantic_model(
    model: torch.nn.Module,
    dataset: CocoInstanceDataset,
    device: torch.device | str = "cpu",
    progress: Callable[[int, int], None] | None = None,
    input_scale: float = 1.0,
) -> dict[str, Any]:
    """Run `model` (eval output [{"probs": [K+1,H,W]}]) over every image of `dataset`, no augmentation.

    Returns {"semantic": {"mIoU", "mIoU_no_bg", "mF1", "mF1_no_bg", "OA", "per_class": {name: {"IoU", "F1"}}},
    "segm": {"AP", "AP50", ...}, "bbox": {...}, "images": n, "seconds_per_image": s}; metrics in percent.
    The truth is the class map painted from the instance polygons (engine.semantic.data.class_map).
    """
    model.eval()
    names = ["background", *dataset.class_names]
    confusion = np.zeros((len(names), len(names)), np.int64)
    results: list[dict] = []
    elapsed = 0.0
    for i in range(len(dataset)):
        raw, target = dataset.load_raw(i)
        image = torch.from_numpy(normalise(raw, dataset.normalisation)).to(device)
        start = time.perf_counter()
        probs = forward_scaled(model, [image], input_scale)[0]["probs"]
        elapsed += time.perf_counter() - start
        probs = probs.float().cpu().numpy()
        if probs.shape != (len(names), *raw.shape[1:]):
            raise ValueError(f"model output {probs.shape} for image {i}: expected "
                             f"{(len(names), *raw.shape[1:])} ([K+1,H,W] at the image's size)")
        truth = class_map(target["masks"], target["labels"])
        confusion += confusion_matrix(truth, probs.argmax(axis=0), len(names))
        results.extend(components_to_coco(i + 1, probs))
        if progress:
            progress(i + 1, len(dataset))
    metrics: dict[str, Any] = {"semantic": semantic_scores(confusion, names)}
    metrics.update(coco_metrics(ground_truth_coco(dataset), results))
    metrics["images"] = len(dataset)
    metrics["seconds_per_image"] = round(elapsed / max(1, len(dataset)), 4)
    return metrics
