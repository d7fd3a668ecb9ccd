"""Semantic FPN (Kirillov et al., Panoptic FPN's semantic branch): the FarSeg paper's baseline.

ResNet trunk + FPN (P2..P5); per level log2(stride/4) x [3x3 conv, norm, ReLU, bilinear x2] down to
stride 4 (P2: one block without upsampling), summed, 1x1 classifier to K+1 classes, bilinear x4.
Loss: pixel cross-entropy ignoring IGNORE_INDEX -> {"loss_ce"}. Contract: engine.semantic.
"""
from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from engine.models.semantic.common import SemanticModel, Stride4Decoder, TrunkFPN, merged_config
from engine.spec import ModelSpec

DEFAULT_CONFIG: dict[str, Any] = {
    "backbone": "resnet18",  # resnet18 | resnet50 | efficientnet_lite0
    "pretrained": False,  # ImageNet weights (efficientnet_lite0 only: none other ship offline)
    "norm": "gn",  # gn | bn: trunk and head normalisation (gn suits batches of 1-4 tiles)
    "fpn_channels": 256,
    "decoder_channels": 128,
}


class SemanticFPN(SemanticModel):
    """[B,bands,H,W] (H, W multiples of 32) -> logits [B,K+1,H,W]; forward follows engine.semantic."""

    def __init__(self, bands: int, num_classes: int, backbone: str = "resnet18", norm: str = "gn",
                 fpn_channels: int = 256, decoder_channels: int = 128, pretrained: bool = False) -> None:
        super().__init__()
        self.backbone = TrunkFPN(backbone, bands, fpn_channels, norm, pretrained)
        self.decoder = Stride4Decoder(fpn_channels, decoder_channels, norm=norm, reduce="sum")
        self.classifier = nn.Conv2d(decoder_channels, num_classes + 1, 1)

    def logits(self, batch: Tensor) -> Tensor:
        pyramid, _ = self.backbone(batch)
        stride4 = self.decoder(list(pyramid.values()))
        return F.interpolate(self.classifier(stride4), scale_factor=4, mode="bilinear", align_corners=False)


def build_semantic_fpn(spec: ModelSpec) -> SemanticFPN:
    """Semantic FPN for `spec.bands` bands and `spec.num_classes` foreground classes (+ background)."""
    cfg = merged_config(DEFAULT_CONFIG, spec)
    return SemanticFPN(spec.bands, spec.num_classes, cfg["backbone"], cfg["norm"], int(cfg["fpn_channels"]),
                       int(cfg["decoder_channels"]), bool(cfg["pretrained"]))
