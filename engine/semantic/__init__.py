"""Semantic segmentation (spec.task == "semantic"): class maps, losses' shared constants, metrics, stitching.

Contract shared by every semantic model, the trainer, the evaluator and the tiled inference:

- Labels: 0 = background, 1..K = spec.classes (K = spec.num_classes), IGNORE_INDEX = padding/ignored pixels.
- Targets: each target dict carries "semantic": int64 Tensor [H, W] with values in {0..K, IGNORE_INDEX},
  the same H, W as its image (instance keys "boxes"/"labels"/"masks" may also be present: ignore them).
- Train mode: `model(images: list[float Tensor [C,H,W]], targets: list[dict])` -> dict of named scalar
  losses (the trainer sums them).
- Eval mode: `model(images)` -> one dict per image {"probs": float Tensor [K+1, H, W]}, softmax class
  probabilities (sum 1 over the class axis) at that image's own size. Models pad a batch to a common
  multiple of 32 internally (targets padded with IGNORE_INDEX) and crop back.
- Architectures that follow this contract are listed in engine.models.SEMANTIC_ARCHITECTURES.
"""
from __future__ import annotations

from engine.spec import IGNORE_INDEX

__all__ = ["IGNORE_INDEX"]
