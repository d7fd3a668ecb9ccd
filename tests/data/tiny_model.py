"""A tiny, randomly initialised 1-band Mask R-CNN checkpoint for fast CLI tests (CPU, a few MB)."""
from __future__ import annotations

from pathlib import Path

import torch

from engine.checkpoint import Checkpoint, save_checkpoint
from engine.models import build_model
from engine.spec import ModelSpec, Normalisation, classes_from_names

TINY = {"backbone": "resnet18", "fpn_channels": 32, "representation_size": 64, "mask_head_channels": 16,
        "mask_head_layers": 1, "rpn_pre_nms_top_n_train": 200, "rpn_post_nms_top_n_train": 100,
        "rpn_pre_nms_top_n_test": 200, "rpn_post_nms_top_n_test": 100, "box_batch_size_per_image": 32,
        "anchor_sizes": [8, 16, 32, 64, 128]}


def write_tiny_checkpoint(path: Path) -> Path:
    """Save the tiny "ship" model (tile 128, overlap 32, score threshold 0) to `path`."""
    torch.manual_seed(0)
    spec = ModelSpec(name="tiny", architecture="mask_rcnn", config=TINY, classes=classes_from_names(["ship"]),
                     bands=1, normalisation=Normalisation(), gsd_m=10.0, tile_size=128, overlap=32, score_threshold=0.0)
    return save_checkpoint(Checkpoint(spec, build_model(spec).state_dict(), {"note": "random"}, {}), path)
