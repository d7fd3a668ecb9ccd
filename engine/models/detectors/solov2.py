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

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.models.detectors.mask_rcnn import BackboneWithFPN, build_backbone
from engine.models.necks.face_fpn import BackboneWithFaceFPN
from engine.models.necks.sem import TrunkWithSEM
from engine.models.solo.heads import DCN_PLACES, KernelCategoryHead, MaskFeatureBranch
from engine.models.solo.losses import solo_losses
from engine.models.solo.matrix_nms import NMS_KERNELS, point_nms
from engine.models.solo.postprocess import InferenceSettings, predict_instances
from engine.models.solo.targets import assign_levels, mask_targets
from engine.spec import ModelSpec

DEFAULT_CONFIG: dict[str, Any] = {
    "backbone": "resnet18",  # resnet18 | resnet50 | efficientnet_lite0
    "pretrained": False,  # ImageNet weights (efficientnet_lite0 only)
    "frozen_blocks": 0,  # efficientnet_lite0: freeze stem + this many blocks
    "fpn_channels": 256,
    "fpn_norm": "gn",  # gn | none (FPN laterals/outputs; FACE-FPN convs)
    "face_fpn": False,  # FACENet's FACE-FPN instead of the FPN
    "aspp_dilations": [6, 12, 18],  # FACE-FPN's ASPP
    "sem": False,  # FACENet's semantic enhancement module on C2
    "dcn": "none",  # none | kernel | towers: DCNv2 in the kernel tower, or in both towers
    "grids": [40, 36, 24, 16, 12],  # S per level P2..P6
    "scale_ranges": [[1, 96], [48, 192], [96, 384], [192, 768], [384, 2048]],  # sqrt(box area), pixels
    "sigma": 0.2,  # centre region: sigma x half the box
    "head_channels": 512,
    "head_convs": 4,
    "mask_feature_channels": 128,
    "mask_feature_relu": True,  # GN + ReLU at the mask feature output (SOLOv2); False: GN only, signed
    "mask_channels": 256,  # E: mask feature channels = weights per dynamic kernel
    "focal_alpha": 0.25,
    "focal_gamma": 2.0,
    "mask_loss_weight": 3.0,
    "score_thresh": 0.1,
    "mask_thresh": 0.5,
    "nms_pre": 500,
    "update_thresh": 0.05,  # score after Matrix NMS
    "detections_per_img": 100,
    "nms_kernel": "gaussian",  # gaussian | linear
    "nms_sigma": 2.0,
}

SIZE_DIVISOR = 32
MASK_STRIDE = 4


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


def pad_to_batch(images: list[Tensor], divisor: int = SIZE_DIVISOR) -> tuple[Tensor, list[tuple[int, int]]]:
    """[C, H_i, W_i] images -> zero-padded batch [B, C, H, W] (H, W multiples of `divisor`) and the sizes."""
    if not images:
        raise ValueError("no images")
    sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
    height = -(-max(h for h, _ in sizes) // divisor) * divisor
    width = -(-max(w for _, w in sizes) // divisor) * divisor
    return torch.stack([F.pad(im, (0, width - im.shape[-1], 0, height - im.shape[-2])) for im in images]), sizes


def merged_config(spec: ModelSpec, defaults: dict[str, Any]) -> dict[str, Any]:
    """`defaults` overridden by spec.config; unknown keys and bad switch values raise a ValueError."""
    unknown = set(spec.config) - set(defaults)
    if unknown:
        raise ValueError(f"unknown {spec.architecture} config keys {sorted(unknown)}; valid: {sorted(defaults)}")
    cfg = {**defaults, **spec.config}
    for key, choices in (("dcn", DCN_PLACES), ("nms_kernel", NMS_KERNELS), ("fpn_norm", ("gn", "none"))):
        if cfg[key] not in choices:
            raise ValueError(f"{spec.architecture} config '{key}': '{cfg[key]}' is not one of {', '.join(choices)}")
    if len(cfg["grids"]) != 5 or len(cfg["scale_ranges"]) != 5:
        raise ValueError(f"{spec.architecture} config: 'grids' and 'scale_ranges' need one entry per level P2..P6")
    return cfg


def build_solo_model(spec: ModelSpec, defaults: dict[str, Any]) -> SOLOv2:
    """SOLOv2 / FACENet for `spec.bands` input bands and `spec.num_classes` classes from `defaults` + config."""
    cfg = merged_config(spec, defaults)
    body, in_channels = build_backbone(cfg, spec.bands)
    if cfg["sem"]:
        body = TrunkWithSEM(body, in_channels)
    channels, norm = int(cfg["fpn_channels"]), cfg["fpn_norm"]
    if cfg["face_fpn"]:
        backbone: nn.Module = BackboneWithFaceFPN(body, in_channels, channels, tuple(cfg["aspp_dilations"]),
                                                  norm == "gn")
    else:
        backbone = BackboneWithFPN(body, in_channels, channels, norm)
    head = KernelCategoryHead(channels, spec.num_classes, cfg["mask_channels"], tuple(cfg["grids"]),
                              cfg["head_channels"], cfg["head_convs"], cfg["dcn"])
    mask_branch = MaskFeatureBranch(channels, cfg["mask_feature_channels"], cfg["mask_channels"],
                                    relu_out=cfg["mask_feature_relu"])
    inference = InferenceSettings(
        score_thresh=cfg["score_thresh"], mask_thresh=cfg["mask_thresh"], nms_pre=cfg["nms_pre"],
        update_thresh=cfg["update_thresh"], detections_per_img=cfg["detections_per_img"],
        nms_kernel=cfg["nms_kernel"], nms_sigma=cfg["nms_sigma"], mask_stride=MASK_STRIDE)
    loss_weights = {"alpha": cfg["focal_alpha"], "gamma": cfg["focal_gamma"], "mask_weight": cfg["mask_loss_weight"]}
    scale_ranges = tuple((float(lo), float(hi)) for lo, hi in cfg["scale_ranges"])
    return SOLOv2(backbone, head, mask_branch, scale_ranges, float(cfg["sigma"]), loss_weights, inference)


def build_solov2(spec: ModelSpec) -> SOLOv2:
    """The SOLOv2 baseline (FPN, no SEM, no DCN unless the config switches them on)."""
    return build_solo_model(spec, DEFAULT_CONFIG)
