"""Mask R-CNN with FPN assembled from torchvision's detection parts and our backbones.

Contract (torchvision's): `model(images: list[Tensor[C,H,W] float], targets=None)`.
Training returns {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"};
eval returns per image {"boxes": [N,4] xyxy pixels, "labels": [N] int64 1..K, "scores": [N],
"masks": [N,1,H,W] probabilities}. Images arrive already normalised (engine.data.normalise): the
model does no resizing and no normalisation, so pixel sizes (and the ground sample distance) are kept.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from engine.models.backbones import LITE_VARIANTS, RESNETS, build_trunk
from engine.spec import ModelSpec

DEFAULT_CONFIG: dict[str, Any] = {
    "backbone": "resnet18",  # resnet18 | resnet50 | efficientnet_lite0 | efficientnet_lite2
    "pretrained": False,  # ImageNet weights (efficientnet_lite0/2 only: none other ship offline)
    "frozen_blocks": 0,  # efficientnet_lite*: freeze stem + this many blocks
    "fpn_channels": 256,
    "fpn_norm": "gn",  # gn | none
    "anchor_sizes": [32, 64, 128, 256, 512],  # pixels, one per level P2..P6
    "aspect_ratios": [0.5, 1.0, 2.0],
    "rpn_pre_nms_top_n_train": 2000,
    "rpn_post_nms_top_n_train": 2000,
    "rpn_pre_nms_top_n_test": 1000,
    "rpn_post_nms_top_n_test": 1000,
    "box_batch_size_per_image": 512,
    "representation_size": 1024,
    "mask_head_channels": 256,
    "mask_head_layers": 4,
    "box_score_thresh": 0.05,
    "box_nms_thresh": 0.5,
    "detections_per_img": 100,
}

BACKBONES = (*RESNETS, *LITE_VARIANTS)


class _NoResizeTransform(GeneralizedRCNNTransform):
    """Batches (pads to a multiple of 32) without resizing or normalising: the data pipeline did both."""

    def normalize(self, image: Tensor) -> Tensor:
        return image

    def resize(self, image: Tensor, target: dict[str, Tensor] | None = None):
        return image, target


class BackboneWithFPN(nn.Module):
    """Trunk (C2..C5) + FPN -> {"c2".."c5", "pool"} with `out_channels` channels (P2..P6)."""

    def __init__(self, body: nn.Module, in_channels: list[int], out_channels: int, norm: str) -> None:
        super().__init__()
        self.body = body
        norm_layer = _gn if norm == "gn" else None
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, LastLevelMaxPool(), norm_layer=norm_layer)
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return self.fpn(self.body(x))


def build_backbone(cfg: dict[str, Any], bands: int) -> tuple[nn.Module, list[int]]:
    """Trunk module returning C2..C5, and its channel counts (engine.models.backbones.build_trunk)."""
    if cfg["backbone"] not in BACKBONES:
        raise ValueError(f"unknown backbone '{cfg['backbone']}'; choose one of {', '.join(BACKBONES)}")
    return build_trunk(cfg["backbone"], bands, bool(cfg["pretrained"]), int(cfg["frozen_blocks"]))


def merged_config(spec: ModelSpec) -> dict[str, Any]:
    unknown = set(spec.config) - set(DEFAULT_CONFIG)
    if unknown:
        raise ValueError(f"unknown mask_rcnn config keys {sorted(unknown)}; valid: {sorted(DEFAULT_CONFIG)}")
    return {**DEFAULT_CONFIG, **spec.config}


def build_mask_rcnn(spec: ModelSpec) -> MaskRCNN:
    """Mask R-CNN + FPN for `spec.bands` input bands and `spec.num_classes` foreground classes."""
    cfg = merged_config(spec)
    body, in_channels = build_backbone(cfg, spec.bands)
    backbone = BackboneWithFPN(body, in_channels, cfg["fpn_channels"], cfg["fpn_norm"])
    anchors = AnchorGenerator(
        sizes=tuple((int(s),) for s in cfg["anchor_sizes"]),
        aspect_ratios=(tuple(float(r) for r in cfg["aspect_ratios"]),) * len(cfg["anchor_sizes"]),
    )
    levels = ["c2", "c3", "c4", "c5"]
    model = MaskRCNN(
        backbone,
        num_classes=spec.num_classes + 1,
        rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(levels, output_size=7, sampling_ratio=2),
        mask_roi_pool=MultiScaleRoIAlign(levels, output_size=14, sampling_ratio=2),
        rpn_pre_nms_top_n_train=cfg["rpn_pre_nms_top_n_train"],
        rpn_post_nms_top_n_train=cfg["rpn_post_nms_top_n_train"],
        rpn_pre_nms_top_n_test=cfg["rpn_pre_nms_top_n_test"],
        rpn_post_nms_top_n_test=cfg["rpn_post_nms_top_n_test"],
        box_batch_size_per_image=cfg["box_batch_size_per_image"],
        box_score_thresh=cfg["box_score_thresh"],
        box_nms_thresh=cfg["box_nms_thresh"],
        box_detections_per_img=cfg["detections_per_img"],
    )
    _resize_heads(model, cfg, spec.num_classes + 1)
    model.transform = _NoResizeTransform(1, 1, [0.0] * spec.bands, [1.0] * spec.bands, size_divisible=32)
    return model


def _resize_heads(model: MaskRCNN, cfg: dict[str, Any], num_outputs: int) -> None:
    """Box head width and mask head depth/width from the config."""
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

    c, rep = cfg["fpn_channels"], cfg["representation_size"]
    model.roi_heads.box_head = TwoMLPHead(c * 7 * 7, rep)
    model.roi_heads.box_predictor = FastRCNNPredictor(rep, num_outputs)
    mc = cfg["mask_head_channels"]
    model.roi_heads.mask_head = MaskRCNNHeads(c, [mc] * cfg["mask_head_layers"], 1, norm_layer=_gn)
    model.roi_heads.mask_predictor = MaskRCNNPredictor(mc, mc, num_outputs)


def _gn(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels), channels)
