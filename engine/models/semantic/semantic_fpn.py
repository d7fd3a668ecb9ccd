"""Semantic FPN (Kirillov et al., Panoptic FPN's semantic branch): the FarSeg paper's baseline.

Trunk + FPN (P2..P5, engine.models.necks.fpn.TrunkFPN); per level log2(stride/4) x [3x3 conv, norm, ReLU,
bilinear x2] down to stride 4 (P2: one block without upsampling), summed, 1x1 classifier to K+1 classes,
bilinear x4. Loss: pixel cross-entropy ignoring IGNORE_INDEX -> {"loss_ce"}. Contract: engine.tasks.semantic.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from engine.models.backbones import PlainTrunk, build_trunk, check_pretrained
from engine.models.config import parse_config
from engine.models.layers.norm import Norm
from engine.models.necks.fpn import TrunkFPN
from engine.models.semantic.common import SemanticModel, Stride4Decoder
from engine.spec import ModelSpec


@dataclass(frozen=True)
class SemanticFPNConfig:
    """Semantic FPN settings (the keys of spec.config).

    Presets (engine.models.MODELS["semantic_fpn"].presets):
    - "paper": ResNet-50 from scratch, FPN 256, decoder 128 (Panoptic FPN's semantic branch);
    - "cpu": the `semantic_fpn` row of scripts/train_nwpu_semantic.sh: EfficientNet-Lite0 ImageNet trunk;
    - "cpu-scratch": ResNet-18 from scratch (`semantic_fpn_scratch` row).
    """

    backbone: PlainTrunk = "resnet18"
    pretrained: bool = False  # ImageNet weights (efficientnet_lite0/2 only: none other ship offline)
    norm: Norm = "gn"  # trunk and head normalisation (gn suits batches of 1-4 tiles)
    fpn_channels: int = 256
    decoder_channels: int = 128

    def __post_init__(self) -> None:
        check_pretrained(self.backbone, self.pretrained)


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"backbone": "resnet50", "pretrained": False, "fpn_channels": 256, "decoder_channels": 128},
    "cpu": {"backbone": "efficientnet_lite0", "pretrained": True},
    "cpu-scratch": {"backbone": "resnet18", "pretrained": False},
}


class SemanticFPN(SemanticModel):
    """TrunkFPN -> Stride4Decoder (sum) -> 1x1 classifier: [B,bands,H,W] (H, W multiples of 32) -> logits
    [B,K+1,H,W]; forward follows engine.tasks.semantic."""

    def __init__(self, backbone: TrunkFPN, decoder: Stride4Decoder, classifier: nn.Conv2d) -> None:
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder
        self.classifier = classifier

    def logits(self, batch: Tensor) -> Tensor:
        pyramid, _ = self.backbone(batch)
        stride4 = self.decoder(list(pyramid.values()))
        return F.interpolate(self.classifier(stride4), scale_factor=4, mode="bilinear", align_corners=False)


def trunk_fpn(cfg: SemanticFPNConfig, bands: int) -> TrunkFPN:
    """The config's trunk (its `norm` for trunks from scratch) + an FPN of `fpn_channels` (also FarSeg's)."""
    body, in_channels = build_trunk(cfg.backbone, bands, cfg.pretrained, norm=cfg.norm)
    return TrunkFPN(body, in_channels, cfg.fpn_channels)


def build_semantic_fpn(spec: ModelSpec) -> SemanticFPN:
    """Semantic FPN for `spec.bands` bands and `spec.num_classes` foreground classes (+ background)."""
    cfg = parse_config(SemanticFPNConfig, spec.config, spec.architecture)
    backbone = trunk_fpn(cfg, spec.bands)
    decoder = Stride4Decoder(cfg.fpn_channels, cfg.decoder_channels, norm=cfg.norm, reduce="sum")
    return SemanticFPN(backbone, decoder, nn.Conv2d(cfg.decoder_channels, spec.num_classes + 1, 1))
