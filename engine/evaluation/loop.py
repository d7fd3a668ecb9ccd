"""The evaluation loop shared by every task: a model over a COCO data set, outputs fed to an evaluator.

An evaluator has detectron2's shape: `reset()`, `process(inputs, outputs)` once per image (here one image
per call), `evaluate() -> metrics dict`. The loop adds "images" (count) and "seconds_per_image" (pure
model time, seconds).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from engine.data.coco import CocoInstanceDataset
from engine.models.scaling import forward_scaled
from engine.normalise import normalise


@dataclass(frozen=True)
class EvalInput:
    """One evaluated image: its COCO id (position + 1, see engine.evaluation.coco_eval), size and truth."""

    image_id: int
    height: int
    width: int
    target: dict[str, np.ndarray]  # {"masks": [N,H,W] uint8, "labels": [N] int64 in 1..K}


class DatasetEvaluator(Protocol):
    """detectron2's evaluator interface."""

    def reset(self) -> None: ...

    def process(self, inputs: list[EvalInput], outputs: list[dict[str, torch.Tensor]]) -> None: ...

    def evaluate(self) -> dict[str, Any]: ...


@torch.no_grad()
def inference_on_dataset(
    model: torch.nn.Module,
    dataset: CocoInstanceDataset,
    evaluator: DatasetEvaluator,
    device: torch.device | str = "cpu",
    progress: Callable[[int, int], None] | None = None,
    input_scale: float = 1.0,
) -> dict[str, Any]:
    """Run `model` in eval mode over every image of `dataset` (no augmentation; each image resized by
    `input_scale`, the model's trained zoom, and its output mapped back) and return the evaluator's
    metrics plus {"images": n, "seconds_per_image": s}. `progress(done, total)` after each image."""
    model.eval()
    evaluator.reset()
    elapsed = 0.0
    for i in range(len(dataset)):
        raw, target = dataset.load_raw(i)
        image = torch.from_numpy(normalise(raw, dataset.normalisation)).to(device)
        start = time.perf_counter()
        outputs = forward_scaled(model, [image], input_scale)
        elapsed += time.perf_counter() - start
        evaluator.process([EvalInput(i + 1, raw.shape[1], raw.shape[2], target)], outputs)
        if progress:
            progress(i + 1, len(dataset))
    metrics = evaluator.evaluate()
    metrics["images"] = len(dataset)
    metrics["seconds_per_image"] = round(elapsed / max(1, len(dataset)), 4)
    return metrics
