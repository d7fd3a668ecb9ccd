"""Cascade Mask R-CNN and HQ-ISNet (Su et al., Remote Sensing 2020) from torchvision's detection parts.

HQ-ISNet = HRNetV2 backbone + HRFPN neck + 3-stage cascade with ISNetV2 mask information flow
(engine.models.detectors.cascade_heads). The paper's ablations are config switches:
`neck` "fpn" | "hrfpn", `mask_flow` "isnetv1" | "isnetv2", `backbone` hrnet_w18/w32/w40 (or
resnet18/50, efficientnet_lite0). "cascade_mask_rcnn" is the baseline (resnet18, fpn, isnetv1);
"hq_isnet" defaults to hrnet_w18 + hrfpn + isnetv2 (W18: the paper's W40 is ~2x slower on a CPU).

Contract (torchvision's, as Mask R-CNN): `model(images: list[Tensor[C,H,W] float], targets=None)`.
Training returns {"loss_objectness", "loss_rpn_box_reg", "loss_classifier_s1", "loss_box_reg_s1",
"loss_mask_s1", ..._s2, ..._s3} (stage losses already weighted 1 / 0.5 / 0.25); eval returns per image
{"boxes": [N,4] xyxy pixels, "labels": [N] int64 1..K, "scores": [N] in [0, 1], sorted, "masks":
[N,1,H,W] probabilities}. Images arrive already normalised: the model pads them to a multiple of 32
but neither resizes nor normalises them (the paper resizes to 1000 x 600; here pixel sizes are kept).
RoIAlign uses aligned=True (paper); the GroupNorm defaults are for training from scratch.
"""
from __future__ import annotations

from typing import Any

from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

from engine.models.backbones import HRNetOptions
from engine.models.backbones import build_trunk as make_trunk
from engine.models.backbones.hrnet import HRNET_WIDTHS
from engine.models.detectors.cascade_heads import (
    MASK_FLOWS,
    AlignedMultiScaleRoIAlign,
    CascadeBoxPredictor,
    CascadeMaskHead,
    CascadeRoIHeads,
)
from engine.models.detectors.mask_rcnn import BACKBONES as MASK_RCNN_BACKBONES
from engine.models.detectors.mask_rcnn import DEFAULT_CONFIG as MASK_RCNN_CONFIG
from engine.models.detectors.mask_rcnn import BackboneWithFPN, _NoResizeTransform
from engine.models.necks.hrfpn import BackboneWithHRFPN
from engine.spec import ModelSpec

BACKBONES = (*HRNET_WIDTHS, *MASK_RCNN_BACKBONES)
NECKS = ("fpn", "hrfpn")
ROI_LEVELS = ["c2", "c3", "c4", "c5"]

DEFAULT_CONFIG: dict[str, Any] = {  # the cascade_mask_rcnn baseline: Mask R-CNN's settings plus these
    **MASK_RCNN_CONFIG,  # backbone resnet18 (or hrnet_w18 | hrnet_w32 | hrnet_w40), FPN, RPN, box and mask heads
    "hrnet_blocks": 4,  # HRNet: bottlenecks of stage 1 and basic blocks per branch (paper: 4)
    "hrnet_modules": [1, 4, 3],  # HRNet: modules of stages 2/3/4 (paper: 1, 4, 3)
    "hrnet_norm": "gn",  # HRNet: gn | bn
    "neck": "fpn",  # fpn | hrfpn (fpn_channels / fpn_norm apply to both)
    "box_positive_fraction": 0.25,
    "mask_flow": "isnetv1",  # isnetv1 (independent mask heads) | isnetv2 (mask information flow)
    "cascade_iou_thresholds": [0.5, 0.6, 0.7],
    "cascade_box_weights": [[10.0, 10.0, 5.0, 5.0], [20.0, 20.0, 10.0, 10.0], [30.0, 30.0, 15.0, 15.0]],
    "cascade_loss_weights": [1.0, 0.5, 0.25],
}

HQ_ISNET_CONFIG: dict[str, Any] = {**DEFAULT_CONFIG, "backbone": "hrnet_w18", "neck": "hrfpn", "mask_flow": "isnetv2"}


def merged_config(spec: ModelSpec, defaults: dict[str, Any]) -> dict[str, Any]:
    """`defaults` overridden by `spec.config`; unknown keys and unknown switch values raise ValueError."""
    unknown = set(spec.config) - set(defaults)
    if unknown:
        raise ValueError(f"unknown {spec.architecture} config keys {sorted(unknown)}; valid: {sorted(defaults)}")
    cfg = {**defaults, **spec.config}
    for key, valid in (("backbone", BACKBONES), ("neck", NECKS), ("mask_flow", MASK_FLOWS)):
        if cfg[key] not in valid:
            raise ValueError(f"unknown {key} '{cfg[key]}'; choose one of {', '.join(valid)}")
    return cfg


def build_trunk(cfg: dict[str, Any], bands: int) -> tuple[nn.Module, list[int]]:
    """Backbone trunk returning {"c2".."c5"} (strides 4..32) and its channel counts."""
    hrnet = HRNetOptions(int(cfg["hrnet_blocks"]), tuple(cfg["hrnet_modules"]), cfg["hrnet_norm"])
    return make_trunk(cfg["backbone"], bands, bool(cfg["pretrained"]), int(cfg["frozen_blocks"]), hrnet=hrnet)


def _rpn(cfg: dict[str, Any], channels: int) -> RegionProposalNetwork:
    """RPN with one anchor size per level P2..P6 (IoU 0.7 / 0.3, 256 samples, half positive, NMS 0.7)."""
    anchors = AnchorGenerator(
        sizes=tuple((int(s),) for s in cfg["anchor_sizes"]),
        aspect_ratios=(tuple(float(r) for r in cfg["aspect_ratios"]),) * len(cfg["anchor_sizes"]),
    )
    return RegionProposalNetwork(
        anchors, RPNHead(channels, anchors.num_anchors_per_location()[0]),
        fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=256, positive_fraction=0.5,
        pre_nms_top_n={"training": cfg["rpn_pre_nms_top_n_train"], "testing": cfg["rpn_pre_nms_top_n_test"]},
        post_nms_top_n={"training": cfg["rpn_post_nms_top_n_train"], "testing": cfg["rpn_post_nms_top_n_test"]},
        nms_thresh=0.7,
    )


def _roi_heads(cfg: dict[str, Any], channels: int, num_outputs: int) -> CascadeRoIHeads:
    stages = len(cfg["cascade_iou_thresholds"])
    rep, mask_channels = int(cfg["representation_size"]), int(cfg["mask_head_channels"])
    isnetv2 = cfg["mask_flow"] == "isnetv2"
    return CascadeRoIHeads(
        box_roi_pool=AlignedMultiScaleRoIAlign(ROI_LEVELS, output_size=7, sampling_ratio=2),
        mask_roi_pool=AlignedMultiScaleRoIAlign(ROI_LEVELS, output_size=14, sampling_ratio=2),
        box_heads=[TwoMLPHead(channels * 7 * 7, rep) for _ in range(stages)],
        box_predictors=[CascadeBoxPredictor(rep, num_outputs) for _ in range(stages)],
        mask_heads=[CascadeMaskHead(channels, mask_channels, int(cfg["mask_head_layers"]), num_outputs,
                                    bridge=isnetv2 and t > 0) for t in range(stages)],
        iou_thresholds=[float(t) for t in cfg["cascade_iou_thresholds"]],
        box_weights=cfg["cascade_box_weights"],
        loss_weights=cfg["cascade_loss_weights"],
        mask_flow=cfg["mask_flow"],
        batch_size_per_image=int(cfg["box_batch_size_per_image"]),
        positive_fraction=float(cfg["box_positive_fraction"]),
        score_thresh=float(cfg["box_score_thresh"]),
        nms_thresh=float(cfg["box_nms_thresh"]),
        detections_per_img=int(cfg["detections_per_img"]),
    )


class CascadeMaskRCNN(GeneralizedRCNN):
    """Backbone + neck -> RPN -> CascadeRoIHeads; padding-only transform (see the module docstring)."""


def _build(spec: ModelSpec, defaults: dict[str, Any]) -> CascadeMaskRCNN:
    cfg = merged_config(spec, defaults)
    body, in_channels = build_trunk(cfg, spec.bands)
    neck = BackboneWithHRFPN if cfg["neck"] == "hrfpn" else BackboneWithFPN
    backbone = neck(body, in_channels, int(cfg["fpn_channels"]), cfg["fpn_norm"])
    transform = _NoResizeTransform(1, 1, [0.0] * spec.bands, [1.0] * spec.bands, size_divisible=32)
    return CascadeMaskRCNN(backbone, _rpn(cfg, backbone.out_channels),
                           _roi_heads(cfg, backbone.out_channels, spec.num_classes + 1), transform)


def build_cascade_mask_rcnn(spec: ModelSpec) -> CascadeMaskRCNN:
    """Cascade Mask R-CNN (defaults: resnet18, FPN, ISNetV1) for `spec.bands` bands, `spec.num_classes` classes."""
    return _build(spec, DEFAULT_CONFIG)


def build_hq_isnet(spec: ModelSpec) -> CascadeMaskRCNN:
    """HQ-ISNet (defaults: hrnet_w18, HRFPN, ISNetV2) for `spec.bands` bands, `spec.num_classes` classes."""
    return _build(spec, HQ_ISNET_CONFIG)
