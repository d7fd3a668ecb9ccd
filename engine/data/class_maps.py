"""Semantic targets from COCO instance files: class maps rasterised from the instance polygons.

Labels: 0 = background, 1..K = spec.classes, engine.spec.IGNORE_INDEX = padding (never in a dataset item).

The class map of an image is painted from its instance masks after the augmentations (the instance
path's flips, rotations, scale jitter and crop), larger instances first and smaller ones last, so a
small object lying on a large one stays visible. Pixels no instance covers are background (0).
The transforms never pad (the crop only shrinks an image), so a dataset item has no IGNORE_INDEX
pixels; the models pad a batch internally and fill the padded target pixels with IGNORE_INDEX.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from engine.data.coco import CocoInstanceDataset


def class_map(masks: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Instance masks [N,H,W] (non-zero = inside) and labels [N] in 1..K -> int64 class map [H,W].

    0 = background; where instances overlap, the smaller one (fewer pixels) is painted on top.
    """
    if masks.ndim != 3 or len(masks) != len(labels):
        raise ValueError(f"masks must be [N,H,W] with one label each; got {masks.shape} and {len(labels)} labels")
    semantic = np.zeros(masks.shape[1:], np.int64)
    areas = masks.astype(bool).sum(axis=(1, 2))
    for k in np.argsort(-areas, kind="stable"):  # largest first, ties in file order
        semantic[masks[k].astype(bool)] = int(labels[k])
    return semantic


class CocoSemanticDataset(CocoInstanceDataset):
    """CocoInstanceDataset whose targets also carry "semantic": int64 [H,W] in 0..K (the semantic models' target).

    The instance keys ("boxes", "labels", "masks", "image_id") stay, after the same transforms.
    """

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image, target = super().__getitem__(i)
        semantic = class_map(target["masks"].numpy(), target["labels"].numpy())
        return image, {**target, "semantic": torch.from_numpy(semantic)}
