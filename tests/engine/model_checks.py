"""Shared model test helpers: tiny configs of every architecture and one training step with the loss contract."""
from __future__ import annotations

from typing import Any

import torch

from engine.spec import ModelSpec, classes_from_names

RCNN = {"fpn_channels": 32, "representation_size": 64, "mask_head_channels": 16, "mask_head_layers": 1,
        "anchor_sizes": [8, 16, 32, 64, 128], "rpn_pre_nms_top_n_train": 64, "rpn_post_nms_top_n_train": 32,
        "rpn_pre_nms_top_n_test": 64, "rpn_post_nms_top_n_test": 32, "box_batch_size_per_image": 16,
        "detections_per_img": 20, "box_score_thresh": 0.0}
HRNET = {"hrnet_blocks": 1, "hrnet_modules": [1, 1, 1]}
SOLO = {"fpn_channels": 32, "head_channels": 32, "head_convs": 2, "mask_feature_channels": 16, "mask_channels": 32,
        "aspp_dilations": [1, 2, 3], "detections_per_img": 20, "score_thresh": 0.0, "update_thresh": 0.0}
SEMANTIC = {"fpn_channels": 16, "decoder_channels": 8}
HI_RESNET = {"channels": [8, 16, 32], "blocks": [1, 1, 1], "modules": [1, 1], "ocr_channels": 16,
             "ocr_key_channels": 8, "window_size": 4}
C2FNET = {"coarse": {"architecture": "semantic_fpn", "config": SEMANTIC},
          "fine": {"architecture": "semantic_fpn", "config": SEMANTIC},
          "small_classes": ["tank"], "window": 32, "stride": 16, "top_k": 4}

# architecture -> a tiny config (thresholds 0: untrained instance models still detect, so shapes are checked)
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "mask_rcnn": RCNN, "cascade_mask_rcnn": {**RCNN, **HRNET}, "hq_isnet": {**RCNN, **HRNET},
    "solov2": SOLO, "facenet": SOLO,
    "semantic_fpn": SEMANTIC, "farseg": SEMANTIC, "hi_resnet": HI_RESNET, "c2fnet": C2FNET,
}
# case -> (architecture, config, bands): the state_dict layouts pinned in tests/engine/data/model_reference.json
LAYOUT_CASES: dict[str, tuple[str, dict[str, Any], int]] = {
    "mask_rcnn": ("mask_rcnn", RCNN, 1),
    "mask_rcnn_lite_nonorm": ("mask_rcnn", {**RCNN, "backbone": "efficientnet_lite0", "fpn_norm": "none",
                                            "frozen_blocks": 2}, 3),
    "cascade": ("cascade_mask_rcnn", {**RCNN, **HRNET}, 1),
    "hq_isnet": ("hq_isnet", {**RCNN, **HRNET}, 1),
    "hq_isnet_lite_fpn_v1": ("hq_isnet", {**RCNN, "backbone": "efficientnet_lite0", "neck": "fpn",
                                          "mask_flow": "isnetv1"}, 2),
    "solov2": ("solov2", SOLO, 1),
    "solov2_dcn": ("solov2", {**SOLO, "dcn": "kernel", "mask_feature_relu": False}, 4),
    "facenet": ("facenet", SOLO, 1),
    "semantic_fpn": ("semantic_fpn", SEMANTIC, 1),
    "farseg": ("farseg", SEMANTIC, 3),
    "farseg_plain": ("farseg", {**SEMANTIC, "fs_relation": False, "scale_aware": False, "loss": "ce"}, 1),
    "hi_resnet": ("hi_resnet", HI_RESNET, 3),
    "hi_resnet_noocr": ("hi_resnet", {**HI_RESNET, "ocr": False, "ia_blocks": False}, 1),
    "c2fnet": ("c2fnet", C2FNET, 1),
}
SEMANTIC_NAMES = ("semantic_fpn", "farseg", "hi_resnet", "c2fnet")


def tiny_spec(architecture: str, config: dict[str, Any] | None = None, bands: int = 1,
              classes: tuple[str, ...] = ("ship", "tank")) -> ModelSpec:
    """A ModelSpec of `architecture` with `config` (default: its tiny config) for `bands` bands and `classes`."""
    return ModelSpec(name="t", architecture=architecture,
                     task="semantic" if architecture in SEMANTIC_NAMES else "instance",
                     config=dict(TINY_CONFIGS[architecture] if config is None else config),
                     classes=classes_from_names(list(classes)), bands=bands)


def train_step(model: torch.nn.Module, images, targets, expected_losses: set[str]) -> dict[str, torch.Tensor]:
    """Zero grads, forward in train mode, assert the loss names and that each is a finite scalar, backward.

    Returns the losses, detached.
    """
    model.train()
    model.zero_grad(set_to_none=True)
    losses = model(images, targets)
    assert set(losses) == expected_losses
    for name, value in losses.items():
        assert value.ndim == 0 and torch.isfinite(value), (name, value)
    sum(losses.values()).backward()
    return {name: value.detach() for name, value in losses.items()}
