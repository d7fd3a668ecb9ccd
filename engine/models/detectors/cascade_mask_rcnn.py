"""Cascade Mask R-CNN and HQ-ISNet (Su et al., Remote Sensing 2020) from torchvision's detection parts.

HQ-ISNet = HRNetV2 backbone + HRFPN neck + 3-stage cascade with ISNetV2 mask information flow
(engine.models.heads.cascade). The paper's ablations are config switches:
`neck` "fpn" | "hrfpn", `mask_flow` "isnetv1" | "isnetv2", `backbone` hrnet_w18/w32/w40 (or
resnet18/50, efficientnet_lite0/2). "cascade_mask_rcnn" is the baseline (resnet18, fpn, isnetv1);
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

from dataclasses import dataclass
from typing import Any, Literal

from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

from engine.models.backbones import HRNetOptions, Trunk, build_trunk
from engine.models.config import parse_config
from engine.models.detectors.mask_rcnn import CPU_RCNN, PAPER_RCNN, ROI_LEVELS, MaskRCNNConfig
from engine.models.heads.cascade import (
    AlignedMultiScaleRoIAlign,
    CascadeBoxPredictor,
    CascadeMaskHead,
    CascadeRoIHeads,
    MaskFlow,
)
from engine.models.heads.rpn import region_proposal_network
from engine.models.layers.transform import NoResizeTransform
from engine.models.necks.fpn import BackboneWithFPN
from engine.models.necks.hrfpn import BackboneWithHRFPN
from engine.spec import ModelSpec

Box4 = tuple[float, float, float, float]


@dataclass(frozen=True)
class CascadeConfig(MaskRCNNConfig):
    """Cascade Mask R-CNN settings: Mask R-CNN's keys (backbone, FPN, RPN, box and mask heads) plus these.

    Defaults: the cascade_mask_rcnn baseline (ResNet-18 from scratch, FPN, ISNetV1 = independent mask heads).
    Presets (engine.models.MODELS["cascade_mask_rcnn"].presets):
    - "paper": Mask R-CNN's paper sizes (ResNet-50, FPN 256, 1024-d box heads, 4 x 256 mask heads);
    - "cpu": the `cascade` row of scripts/train_instance.sh: the slim CPU R-CNN block (EfficientNet-Lite0
      ImageNet trunk, 3 blocks frozen, anchors 16..256, FPN 128, 512-d box heads, 128-wide mask heads, 256
      sampled RoIs, RPN 1000/1000, 1000 test proposals, 300 detections).
    """

    backbone: Trunk = "resnet18"  # hrnet_w18 | hrnet_w32 | hrnet_w40 | resnet18 | resnet50 | efficientnet_lite0/2
    hrnet_blocks: int = 4  # HRNet: bottlenecks of stage 1 and basic blocks per branch (paper: 4)
    hrnet_modules: tuple[int, int, int] = (1, 4, 3)  # HRNet: modules of stages 2/3/4 (paper: 1, 4, 3)
    hrnet_norm: Literal["gn", "bn"] = "gn"
    neck: Literal["fpn", "hrfpn"] = "fpn"  # fpn_channels / fpn_norm apply to both
    box_positive_fraction: float = 0.25
    mask_flow: MaskFlow = "isnetv1"  # isnetv1 (independent mask heads) | isnetv2 (mask information flow)
    cascade_iou_thresholds: tuple[float, ...] = (0.5, 0.6, 0.7)
    cascade_box_weights: tuple[Box4, ...] = ((10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0), (30.0, 30.0, 15.0, 15.0))
    cascade_loss_weights: tuple[float, ...] = (1.0, 0.5, 0.25)

    def __post_init__(self) -> None:
        super().__post_init__()
        counts = (len(self.cascade_iou_thresholds), len(self.cascade_box_weights), len(self.cascade_loss_weights))
        if len(set(counts)) != 1 or counts[0] < 1:
            raise ValueError("cascade stages disagree: give as many cascade_iou_thresholds, cascade_box_weights "
                             f"and cascade_loss_weights (got {', '.join(map(str, counts))})")


@dataclass(frozen=True)
class HQISNetConfig(CascadeConfig):
    """HQ-ISNet settings: CascadeConfig's keys with HQ-ISNet's defaults (HRNet-W18 from scratch, HRFPN, ISNetV2).

    Presets (engine.models.MODELS["hq_isnet"].presets):
    - "paper": the paper's sizes: HRNetV2-W40 (4 blocks, modules 1/4/3), HRFPN 256, 1024-d box heads,
      4 x 256 mask heads, Mask R-CNN's RPN and sampling (GroupNorm kept: no ImageNet HRNet ships offline);
    - "cpu": the `hq_isnet` row of scripts/train_instance.sh: the slim CPU R-CNN block (see CascadeConfig)
      on the EfficientNet-Lite0 ImageNet trunk, HRFPN, ISNetV2;
    - "cpu-v1": the same with ISNetV1 (`hq_isnet_v1` row); "cpu-fpn": FPN instead of HRFPN (`hq_isnet_fpn`);
    - "cpu-hrnet": the slim block on HRNet-W18 from scratch (`hq_isnet_hrnet` row).
    """

    backbone: Trunk = "hrnet_w18"
    neck: Literal["fpn", "hrfpn"] = "hrfpn"
    mask_flow: MaskFlow = "isnetv2"


HQ_CPU = {**CPU_RCNN, "neck": "hrfpn", "mask_flow": "isnetv2"}
CASCADE_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {**PAPER_RCNN, "neck": "fpn", "mask_flow": "isnetv1"},
    "cpu": {**CPU_RCNN, "neck": "fpn", "mask_flow": "isnetv1"},
}
HQ_ISNET_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {**PAPER_RCNN, "backbone": "hrnet_w40", "hrnet_blocks": 4, "hrnet_modules": [1, 4, 3],
              "neck": "hrfpn", "mask_flow": "isnetv2"},
    "cpu": HQ_CPU,
    "cpu-v1": {**HQ_CPU, "mask_flow": "isnetv1"},
    "cpu-fpn": {**HQ_CPU, "neck": "fpn"},
    "cpu-hrnet": {**{k: v for k, v in HQ_CPU.items() if k not in ("pretrained", "frozen_blocks")},
                  "backbone": "hrnet_w18"},
}


class CascadeMaskRCNN(GeneralizedRCNN):
    """Backbone + neck -> RPN -> CascadeRoIHeads; padding-only transform (see the module docstring)."""


def cascade_roi_heads(cfg: CascadeConfig, channels: int, num_outputs: int) -> CascadeRoIHeads:
    """One box head (2-layer MLP), box predictor and mask head per stage, on aligned RoIAlign of P2..P5."""
    stages = len(cfg.cascade_iou_thresholds)
    rep = cfg.representation_size
    isnetv2 = cfg.mask_flow == "isnetv2"
    return CascadeRoIHeads(
        box_roi_pool=AlignedMultiScaleRoIAlign(ROI_LEVELS, output_size=7, sampling_ratio=2),
        mask_roi_pool=AlignedMultiScaleRoIAlign(ROI_LEVELS, output_size=14, sampling_ratio=2),
        box_heads=[TwoMLPHead(channels * 7 * 7, rep) for _ in range(stages)],
        box_predictors=[CascadeBoxPredictor(rep, num_outputs) for _ in range(stages)],
        mask_heads=[CascadeMaskHead(channels, cfg.mask_head_channels, cfg.mask_head_layers, num_outputs,
                                    bridge=isnetv2 and t > 0) for t in range(stages)],
        iou_thresholds=list(cfg.cascade_iou_thresholds),
        box_weights=[list(w) for w in cfg.cascade_box_weights],
        loss_weights=list(cfg.cascade_loss_weights),
        mask_flow=cfg.mask_flow,
        batch_size_per_image=cfg.box_batch_size_per_image,
        positive_fraction=cfg.box_positive_fraction,
        score_thresh=cfg.box_score_thresh,
        nms_thresh=cfg.box_nms_thresh,
        detections_per_img=cfg.detections_per_img,
    )


def _build(spec: ModelSpec, cfg: CascadeConfig) -> CascadeMaskRCNN:
    hrnet = HRNetOptions(cfg.hrnet_blocks, cfg.hrnet_modules, cfg.hrnet_norm)
    body, in_channels = build_trunk(cfg.backbone, spec.bands, cfg.pretrained, cfg.frozen_blocks, hrnet=hrnet)
    neck = BackboneWithHRFPN if cfg.neck == "hrfpn" else BackboneWithFPN
    backbone = neck(body, in_channels, cfg.fpn_channels, cfg.fpn_norm)
    rpn = region_proposal_network(backbone.out_channels, cfg.anchor_sizes, cfg.aspect_ratios,
                                  (cfg.rpn_pre_nms_top_n_train, cfg.rpn_pre_nms_top_n_test),
                                  (cfg.rpn_post_nms_top_n_train, cfg.rpn_post_nms_top_n_test))
    roi_heads = cascade_roi_heads(cfg, backbone.out_channels, spec.num_classes + 1)
    return CascadeMaskRCNN(backbone, rpn, roi_heads, NoResizeTransform(spec.bands))


def build_cascade_mask_rcnn(spec: ModelSpec) -> CascadeMaskRCNN:
    """Cascade Mask R-CNN (defaults: resnet18, FPN, ISNetV1) for `spec.bands` bands, `spec.num_classes` classes."""
    return _build(spec, parse_config(CascadeConfig, spec.config, spec.architecture))


def build_hq_isnet(spec: ModelSpec) -> CascadeMaskRCNN:
    """HQ-ISNet (defaults: hrnet_w18, HRFPN, ISNetV2) for `spec.bands` bands, `spec.num_classes` classes."""
    return _build(spec, parse_config(HQISNetConfig, spec.config, spec.architecture))
