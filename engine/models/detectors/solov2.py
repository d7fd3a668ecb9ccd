"""SOLOv2 (Wang et al., NeurIPS 2020): segmenting objects by locations with dynamic kernels.

Contract (torchvision's, as Mask R-CNN here): `model(images: list[Tensor[C,H,W] float], targets=None)`;
targets are {"boxes" [N,4] xyxy float, "labels" [N] int64 1..K, "masks" [N,H,W] uint8}.
Training returns {"loss_category", "loss_mask"}; eval returns per image {"boxes": [N,4] xyxy pixels (mask
extents), "labels": [N] int64 1..K, "scores": [N] in [0, 1], "masks": [N,1,H,W] probabilities}.
Images arrive normalised; the model only zero-pads them (bottom/right) to a multiple of 32, so image
sizes may differ within a batch and pixel sizes are kept.

Data flow: trunk (C2..C5, optional SEM on C2) -> neck (FPN or FACE-FPN) -> P2..P6 ->
KernelCategoryHead (kernels + categories on S x S grids) and MaskFeatureBranch (P2..P5 -> stride 4) ->
training: targets.assign_levels + losses.solo_losses; eval: point NMS + postprocess.predict_instances.
FACENet (engine.models.detectors.facenet) is this model with `face_fpn`, `sem` and `dcn` switched on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from engine.models.backbones import PlainTrunk, build_trunk, check_pretrained
from engine.models.config import parse_config
from engine.models.layers.transform import pad_to_batch
from engine.models.necks.face_fpn import BackboneWithFaceFPN
from engine.models.necks.fpn import BackboneWithFPN, FPNNorm
from engine.models.necks.sem import TrunkWithSEM
from engine.models.solo.heads import DCNPlace, KernelCategoryHead, MaskFeatureBranch
from engine.models.solo.losses import solo_losses
from engine.models.solo.matrix_nms import NMSKernel, point_nms
from engine.models.solo.postprocess import InferenceSettings, predict_instances
from engine.models.solo.targets import assign_levels, mask_targets
from engine.spec import ModelSpec

Range = tuple[float, float]
MASK_STRIDE = 4


@dataclass(frozen=True)
class SOLOv2Config:
    """SOLOv2 settings (the keys of spec.config); defaults are the paper's on a ResNet-18 trunk.

    Presets (engine.models.MODELS["solov2"].presets):
    - "paper": SOLOv2's sizes: ResNet-50 from scratch, FPN 256, 4 x 512 head convs, mask feature 128 -> E 256,
      grids 40/36/24/16/12;
    - "cpu": the SOLO block of scripts/train_instance.sh: EfficientNet-Lite0 ImageNet trunk (3 blocks frozen),
      FPN 128, the light 256-wide head, mask feature 128 -> E 128, signed mask feature (no output ReLU);
    - "cpu-dcn": the same with DCNv2 in the kernel branch (`solov2_dcn` row).
    """

    backbone: PlainTrunk = "resnet18"
    pretrained: bool = False  # ImageNet weights (efficientnet_lite0/2 only)
    frozen_blocks: int = 0  # efficientnet_lite*: freeze stem + this many blocks
    fpn_channels: int = 256
    fpn_norm: FPNNorm = "gn"  # FPN laterals/outputs; FACE-FPN convs
    face_fpn: bool = False  # FACENet's FACE-FPN instead of the FPN
    aspp_dilations: tuple[int, ...] = (6, 12, 18)  # FACE-FPN's ASPP
    sem: bool = False  # FACENet's semantic enhancement module on C2
    dcn: DCNPlace = "none"  # none | kernel | towers: DCNv2 in the kernel tower, or in both towers
    grids: tuple[int, int, int, int, int] = (40, 36, 24, 16, 12)  # S per level P2..P6
    scale_ranges: tuple[Range, Range, Range, Range, Range] = (
        (1.0, 96.0), (48.0, 192.0), (96.0, 384.0), (192.0, 768.0), (384.0, 2048.0))  # sqrt(box area), pixels
    sigma: float = 0.2  # centre region: sigma x half the box
    head_channels: int = 512
    head_convs: int = 4
    mask_feature_channels: int = 128
    mask_feature_relu: bool = True  # GN + ReLU at the mask feature output (SOLOv2); False: GN only, signed
    mask_channels: int = 256  # E: mask feature channels = weights per dynamic kernel
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    mask_loss_weight: float = 3.0
    score_thresh: float = 0.1
    mask_thresh: float = 0.5
    nms_pre: int = 500
    update_thresh: float = 0.05  # score after Matrix NMS
    detections_per_img: int = 100
    nms_kernel: NMSKernel = "gaussian"
    nms_sigma: float = 2.0

    def __post_init__(self) -> None:
        check_pretrained(self.backbone, self.pretrained)


SOLO_PAPER: dict[str, Any] = {
    "backbone": "resnet50", "fpn_channels": 256, "head_channels": 512, "head_convs": 4, "mask_feature_channels": 128,
    "mask_channels": 256, "grids": [40, 36, 24, 16, 12],
}
SOLO_CPU: dict[str, Any] = {
    "backbone": "efficientnet_lite0", "pretrained": True, "frozen_blocks": 3, "fpn_channels": 128,
    "head_channels": 256, "mask_feature_channels": 128, "mask_channels": 128, "mask_feature_relu": False,
}
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {**SOLO_PAPER, "face_fpn": False, "sem": False, "dcn": "none"},
    "cpu": {**SOLO_CPU, "face_fpn": False, "sem": False, "dcn": "none"},
    "cpu-dcn": {**SOLO_CPU, "face_fpn": False, "sem": False, "dcn": "kernel"},
}


class SOLOv2(nn.Module):
    """backbone (-> P2..P6 dict) + kernel/category head + mask feature branch; see the module docstring."""

    def __init__(self, backbone: nn.Module, head: KernelCategoryHead, mask_branch: MaskFeatureBranch,
                 scale_ranges: tuple[tuple[float, float], ...], sigma: float, loss_weights: dict[str, float],
                 inference: InferenceSettings) -> None:
        super().__init__()
        self.backbone, self.head, self.mask_branch = backbone, head, mask_branch
        self.scale_ranges, self.sigma, self.loss_weights = scale_ranges, sigma, loss_weights
        self.inference = inference

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        if self.training and targets is None:
            raise ValueError("targets are needed in training mode")
        batch, sizes = pad_to_batch(images)
        pyramid = list(self.backbone(batch).values())  # P2..P6
        kernels, categories = self.head(pyramid)
        mask_features = self.mask_branch(pyramid[:4])
        # losses and post-processing in fp32 under AMP: mask areas and intersections are counts up to h * w
        with torch.autocast(batch.device.type, enabled=False):
            if self.training:
                return self._losses(kernels, categories, mask_features, targets, batch.shape[-2:])
            return self._predict(kernels, categories, mask_features, sizes)

    def _losses(self, kernels: list[Tensor], categories: list[Tensor], mask_features: Tensor,
                targets: list[dict[str, Tensor]], padded_size: tuple[int, int]) -> dict[str, Tensor]:
        level_targets, masks = [], []
        for t in targets:
            boxes, labels, gt_masks = t["boxes"].float(), t["labels"].long(), t["masks"]
            level_targets.append(assign_levels(boxes, labels, gt_masks, padded_size, self.head.grids,
                                               self.scale_ranges, self.sigma))
            masks.append(mask_targets(gt_masks, padded_size, MASK_STRIDE))
        return solo_losses(kernels, categories, mask_features, level_targets, masks, **self.loss_weights)

    @torch.no_grad()
    def _predict(self, kernels: list[Tensor], categories: list[Tensor], mask_features: Tensor,
                 sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        probs = [point_nms(c.float().sigmoid()) for c in categories]
        return [predict_instances([k[b] for k in kernels], [p[b] for p in probs], mask_features[b], size,
                                  self.inference)
                for b, size in enumerate(sizes)]


def build_solo_model(spec: ModelSpec, cfg: SOLOv2Config) -> SOLOv2:
    """SOLOv2 / FACENet for `spec.bands` input bands and `spec.num_classes` classes from a parsed config."""
    body, in_channels = build_trunk(cfg.backbone, spec.bands, cfg.pretrained, cfg.frozen_blocks)
    if cfg.sem:
        body = TrunkWithSEM(body, in_channels)
    if cfg.face_fpn:
        backbone: nn.Module = BackboneWithFaceFPN(body, in_channels, cfg.fpn_channels, cfg.aspp_dilations,
                                                  cfg.fpn_norm == "gn")
    else:
        backbone = BackboneWithFPN(body, in_channels, cfg.fpn_channels, cfg.fpn_norm)
    head = KernelCategoryHead(cfg.fpn_channels, spec.num_classes, cfg.mask_channels, cfg.grids, cfg.head_channels,
                              cfg.head_convs, cfg.dcn)
    mask_branch = MaskFeatureBranch(cfg.fpn_channels, cfg.mask_feature_channels, cfg.mask_channels,
                                    relu_out=cfg.mask_feature_relu)
    inference = InferenceSettings(
        score_thresh=cfg.score_thresh, mask_thresh=cfg.mask_thresh, nms_pre=cfg.nms_pre,
        update_thresh=cfg.update_thresh, detections_per_img=cfg.detections_per_img,
        nms_kernel=cfg.nms_kernel, nms_sigma=cfg.nms_sigma, mask_stride=MASK_STRIDE)
    loss_weights = {"alpha": cfg.focal_alpha, "gamma": cfg.focal_gamma, "mask_weight": cfg.mask_loss_weight}
    return SOLOv2(backbone, head, mask_branch, cfg.scale_ranges, cfg.sigma, loss_weights, inference)


def build_solov2(spec: ModelSpec) -> SOLOv2:
    """The SOLOv2 baseline (FPN, no SEM, no DCN unless the config switches them on)."""
    return build_solo_model(spec, parse_config(SOLOv2Config, spec.config, spec.architecture))
