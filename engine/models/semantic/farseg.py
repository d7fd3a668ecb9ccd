"""FarSeg (Zheng et al., CVPR 2020): foreground-aware relation network for geospatial object segmentation.

ResNet + FPN (P2..P5, `fpn_channels` ch) and a scene vector u = GAP(C5) [B,C5,1,1].
F-S relation per level i: u_i = scene_encoder_i(u) (1x1 C5->ch, ReLU, 1x1; one per level when
"scale_aware", one shared otherwise), v_i = content_encoder_i(P_i) (1x1+norm+ReLU),
r_i = sigmoid(sum_c u_i * v_i) [B,1,H_i,W_i], output r_i * reencoder_i(P_i) (1x1+norm+ReLU).
Light-weight decoder (common.Stride4Decoder, mean over levels) -> 1x1 classifier -> bilinear x4.
Loss: "fa" (engine.semantic.fa_loss, annealed over the model's own step counter) | "ce" | "focal".
Contract: engine.semantic.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.models.semantic.common import SemanticModel, Stride4Decoder, TrunkFPN, conv_norm_relu, merged_config
from engine.semantic.fa_loss import SCHEDULES, fa_loss, focal_loss
from engine.spec import ModelSpec

DEFAULT_CONFIG: dict[str, Any] = {
    "backbone": "resnet18",  # resnet18 | resnet50 (the paper: resnet50) | efficientnet_lite0
    "pretrained": False,  # ImageNet weights (efficientnet_lite0 only: none other ship offline)
    "norm": "gn",  # gn | bn: trunk and head normalisation (the paper: synchronised BN over 8 images)
    "fpn_channels": 256,  # FPN width d, also the shared manifold d_u of the F-S relation
    "decoder_channels": 128,
    "fs_relation": True,  # False: the decoder reads plain FPN features (ablation)
    "scale_aware": True,  # one scene encoder per level; False: one shared scene encoder
    "loss": "fa",  # fa | ce | focal
    "annealing": "cosine",  # cosine | linear | poly
    "annealing_steps": 10000,  # training steps T over which the F-A loss moves from CE to normalised focal
    "gamma": 2.0,  # focusing factor
}

LOSSES = ("fa", "ce", "focal")
LEVELS = 4  # P2..P5


class ForegroundSceneRelation(nn.Module):
    """F-S relation: pyramid [B,ch,H_i,W_i] x4 + C5 [B,C5ch,h,w] -> re-weighted pyramid, same shapes."""

    def __init__(self, c5_channels: int, channels: int, scale_aware: bool, norm: str) -> None:
        super().__init__()

        def scene_encoder() -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c5_channels, channels, 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(channels, channels, 1))

        self.scale_aware = scale_aware
        self.scene_encoders = nn.ModuleList(scene_encoder() for _ in range(LEVELS if scale_aware else 1))
        self.content_encoders = nn.ModuleList(conv_norm_relu(channels, channels, 1, norm) for _ in range(LEVELS))
        self.reencoders = nn.ModuleList(conv_norm_relu(channels, channels, 1, norm) for _ in range(LEVELS))

    def relations(self, pyramid: list[Tensor], c5: Tensor) -> list[Tensor]:
        """Relation maps r_i = sigmoid(<u_i, v_i>) [B,1,H_i,W_i] in (0, 1), one per level."""
        scene = F.adaptive_avg_pool2d(c5, 1)
        maps = []
        for i, (feature, content_encoder) in enumerate(zip(pyramid, self.content_encoders, strict=True)):
            u = self.scene_encoders[i if self.scale_aware else 0](scene)
            maps.append(torch.sigmoid((u * content_encoder(feature)).sum(dim=1, keepdim=True)))
        return maps

    def forward(self, pyramid: list[Tensor], c5: Tensor) -> list[Tensor]:
        return [r * reencoder(p) for r, reencoder, p in zip(self.relations(pyramid, c5), self.reencoders, pyramid,
                                                             strict=True)]


class FarSeg(SemanticModel):
    """[B,bands,H,W] (H, W multiples of 32) -> logits [B,K+1,H,W]; forward follows engine.semantic.

    `train_step` (int64 buffer, in state_dict) counts training forwards: the F-A annealing step t.
    """

    def __init__(self, bands: int, num_classes: int, cfg: dict[str, Any]) -> None:
        super().__init__()
        if cfg["loss"] not in LOSSES:
            raise ValueError(f"unknown farseg loss '{cfg['loss']}'; choose one of {', '.join(LOSSES)}")
        if cfg["annealing"] not in SCHEDULES:
            raise ValueError(f"unknown annealing '{cfg['annealing']}'; choose one of {', '.join(SCHEDULES)}")
        channels = int(cfg["fpn_channels"])
        self.loss_name = cfg["loss"]
        self.annealing = cfg["annealing"]
        self.annealing_steps = int(cfg["annealing_steps"])
        self.gamma = float(cfg["gamma"])
        self.backbone = TrunkFPN(cfg["backbone"], bands, channels, cfg["norm"], bool(cfg["pretrained"]))
        self.relation = (ForegroundSceneRelation(self.backbone.c5_channels, channels, bool(cfg["scale_aware"]),
                                                 cfg["norm"]) if cfg["fs_relation"] else None)
        self.decoder = Stride4Decoder(channels, int(cfg["decoder_channels"]), norm=cfg["norm"], reduce="mean")
        self.classifier = nn.Conv2d(int(cfg["decoder_channels"]), num_classes + 1, 1)
        self.register_buffer("train_step", torch.zeros((), dtype=torch.int64))

    def logits(self, batch: Tensor) -> Tensor:
        pyramid, c5 = self.backbone(batch)
        features = list(pyramid.values())
        if self.relation is not None:
            features = self.relation(features, c5)
        stride4 = self.decoder(features)
        return F.interpolate(self.classifier(stride4), scale_factor=4, mode="bilinear", align_corners=False)

    def losses(self, logits: Tensor, target_map: Tensor) -> dict[str, Tensor]:
        """{"loss_fa"} | {"loss_ce"} | {"loss_focal"}; advances `train_step` by one."""
        step = int(self.train_step)
        self.train_step += 1
        if self.loss_name == "ce":
            return super().losses(logits, target_map)
        if self.loss_name == "focal":
            return {"loss_focal": focal_loss(logits, target_map, self.gamma)}
        return {"loss_fa": fa_loss(logits, target_map, step, self.annealing_steps, self.gamma, self.annealing)}


def build_farseg(spec: ModelSpec) -> FarSeg:
    """FarSeg for `spec.bands` bands and `spec.num_classes` foreground classes (+ background)."""
    return FarSeg(spec.bands, spec.num_classes, merged_config(DEFAULT_CONFIG, spec))

