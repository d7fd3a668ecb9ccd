"""Semantic evaluator: pixel metrics (mIoU, F1, OA) and COCO AP of the predicted class components.

The result keeps the instance evaluator's layout ("segm"/"bbox" AP) and adds "semantic" (mIoU, F1, OA),
so the trainer, the CLI and reports read both kinds of model alike.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from engine.data.class_maps import class_map
from engine.data.coco import CocoInstanceDataset
from engine.evaluation.coco_eval import coco_metrics, ground_truth_coco
from engine.evaluation.loop import EvalInput, inference_on_dataset
from engine.evaluation.semantic_metrics import components_to_coco, confusion_matrix, semantic_scores


class SemanticEvaluator:
    """reset / process / evaluate over eval outputs {"probs": [K+1,H,W]} at each image's own size.

    The truth is the class map painted from the image's instance polygons (engine.data.class_maps.class_map);
    pixel counts are summed into one confusion matrix over the data set before scoring.
    """

    def __init__(self, dataset: CocoInstanceDataset) -> None:
        self.names = ["background", *dataset.class_names]
        self.gt = ground_truth_coco(dataset)
        self.reset()

    def reset(self) -> None:
        self.confusion = np.zeros((len(self.names), len(self.names)), np.int64)
        self.results: list[dict] = []

    def process(self, inputs: list[EvalInput], outputs: list[dict[str, torch.Tensor]]) -> None:
        for inp, output in zip(inputs, outputs):
            probs = output["probs"].float().cpu().numpy()
            expected = (len(self.names), inp.height, inp.width)
            if probs.shape != expected:
                raise ValueError(f"model output {probs.shape} for image {inp.image_id - 1}: expected "
                                 f"{expected} ([K+1,H,W] at the image's size)")
            truth = class_map(inp.target["masks"], inp.target["labels"])
            self.confusion += confusion_matrix(truth, probs.argmax(axis=0), len(self.names))
            self.results.extend(components_to_coco(inp.image_id, probs))

    def evaluate(self) -> dict[str, Any]:
        """{"semantic": {"mIoU", "mIoU_no_bg", "mF1", "mF1_no_bg", "OA", "per_class": {name: {"IoU", "F1"}}},
        "segm": {"AP", ...}, "bbox": {...}}; metrics in percent."""
        return {"semantic": semantic_scores(self.confusion, self.names), **coco_metrics(self.gt, self.results)}


def evaluate_semantic_model(
    model: torch.nn.Module,
    dataset: CocoInstanceDataset,
    device: torch.device | str = "cpu",
    progress: Callable[[int, int], None] | None = None,
    input_scale: float = 1.0,
) -> dict[str, Any]:
    """Run `model` (eval output [{"probs": [K+1,H,W]}]) over every image of `dataset`, no augmentation.

    Returns SemanticEvaluator's metrics plus "images" and "seconds_per_image".
    """
    return inference_on_dataset(model, dataset, SemanticEvaluator(dataset), device, progress, input_scale)
