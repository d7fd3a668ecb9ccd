"""FarSeg (Zheng et al., CVPR 2020): foreground-aware relation network for geospatial object segmentation.

ResNet + FPN (P2..P5, `fpn_channels` ch) and a scene vector u = GAP(C5) [B,C5,1,1].
F-S relation per level i: u_i = scene_encoder_i(u) (1x1 C5->ch, ReLU, 1x1; one per level when
"scale_aware", one shared otherwise), v_i = content_encoder_i(P_i) (1x1+norm+ReLU),
r_i = sigmoid(sum_c u_i * v_i) [B,1,H_i,W_i] (with "scaled_relation": sum / sqrt(ch), as in scaled
dot-product attention), output r_i * reencoder_i(P_i) (1x1+norm+ReLU).
Light-weight decoder (common.Stride4Decoder, mean over levels, or their sum with "decoder_reduce": "sum") ->
1x1 classifier -> bilinear x4.
Loss: "fa" (engine.models.losses.fa_loss, annealed over the model's own step counter) | "ce" | "focal".
Contract: engine.tasks.semantic.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.models.config import parse_config
from engine.models.layers.conv import conv_norm_relu
from engine.models.losses.fa_loss import Annealing, fa_loss, focal_loss
from engine.models.necks.fpn import TrunkFPN
from engine.models.semantic.common import SemanticModel, Stride4Decoder
from engine.models.semantic.semantic_fpn import SemanticFPNConfig, trunk_fpn
from engine.spec import ModelSpec

LEVELS = 4  # P2..P5
FarSegLoss = Literal["fa", "ce", "focal"]


@dataclass(frozen=True)
class FarSegConfig(SemanticFPNConfig):
    """FarSeg settings: Semantic FPN's keys (backbone, pretrained, norm, fpn_channels = the shared manifold d_u
    of the F-S relation, decoder_channels) plus the F-S relation and F-A loss switches.

    Presets (engine.models.MODELS["farseg"].presets):
    - "paper": ResNet-50 from scratch, FPN 256, decoder 128, F-A loss annealed (cosine) over 10000 steps;
    - "cpu": the `farseg` row of research/train_nwpu_semantic.sh: EfficientNet-Lite0 ImageNet trunk, the scaled
      relation and the summed decoder (the overfit proof: 67.2 mIoU after 100 iterations against 8.7 for the
      paper's forms, docs/overfit.md), F-A loss annealed over 121 steps (1/6 of a 4-epoch schedule: override
      `annealing_steps`);
    - "cpu-ce": the same trunk with plain cross-entropy (`farseg_ce` ablation row).
    """

    fs_relation: bool = True  # False: the decoder reads plain FPN features (ablation)
    scale_aware: bool = True  # one scene encoder per level; False: one shared scene encoder
    # The paper's raw dot product over `fpn_channels` channels starts with up to 72 % of a level's pixels at
    # r < 0.05 (their features switched off) and, after 8 NWPU epochs, ends saturated at r > 0.95 everywhere, a
    # dead relation (docs/overfit.md); divided by sqrt(channels) it starts near 0.5 and keeps a gradient.
    scaled_relation: bool = False
    # The paper averages the 4 decoder levels; the sum (Semantic FPN's) feeds the classifier 4x larger inputs, so
    # under Adam its logits move 4x faster per step (the same function class).
    decoder_reduce: Literal["mean", "sum"] = "mean"
    loss: FarSegLoss = "fa"
    annealing: Annealing = "cosine"
    annealing_steps: int = 10000  # training steps T over which the F-A loss moves from CE to normalised focal
    gamma: float = 2.0  # focusing factor


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"backbone": "resnet50", "pretrained": False, "fpn_channels": 256, "decoder_channels": 128,
              "loss": "fa", "annealing": "cosine", "annealing_steps": 10000},
    "cpu": {"backbone": "efficientnet_lite0", "pretrained": True, "scaled_relation": True, "decoder_reduce": "sum",
            "loss": "fa", "annealing_steps": 4 * 182 // 6},
    "cpu-ce": {"backbone": "efficientnet_lite0", "pretrained": True, "scaled_relation": True, "decoder_reduce": "sum",
               "loss": "ce"},
}


class ForegroundSceneRelation(nn.Module):
    """F-S relation: pyramid [B,ch,H_i,W_i] x4 + C5 [B,C5ch,h,w] -> re-weighted pyramid, same shapes."""

    def __init__(self, c5_channels: int, channels: int, scale_aware: bool, norm: str, scaled: bool = False) -> None:
        super().__init__()
        self.dot_scale = channels ** -0.5 if scaled else 1.0

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
            maps.append(torch.sigmoid((u * content_encoder(feature)).sum(dim=1, keepdim=True) * self.dot_scale))
        return maps

    def forward(self, pyramid: list[Tensor], c5: Tensor) -> list[Tensor]:
        return [r * reencoder(p) for r, reencoder, p in zip(self.relations(pyramid, c5), self.reencoders, pyramid,
                                                             strict=True)]


class FarSeg(SemanticModel):
    """TrunkFPN -> F-S relation (optional) -> Stride4Decoder (mean) -> 1x1 classifier: [B,bands,H,W] (H, W
    multiples of 32) -> logits [B,K+1,H,W]; forward follows engine.tasks.semantic.

    `train_step` (int64 buffer, in state_dict) counts training forwards: the F-A annealing step t.
    """

    def __init__(self, backbone: TrunkFPN, relation: ForegroundSceneRelation | None, decoder: Stride4Decoder,
                 classifier: nn.Conv2d, loss: FarSegLoss = "fa", annealing: Annealing = "cosine",
                 annealing_steps: int = 10000, gamma: float = 2.0) -> None:
        super().__init__()
        self.loss_name = loss
        self.annealing = annealing
        self.annealing_steps = annealing_steps
        self.gamma = gamma
        self.backbone = backbone
        self.relation = relation
        self.decoder = decoder
        self.classifier = classifier
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
    cfg = parse_config(FarSegConfig, spec.config, spec.architecture)
    backbone = trunk_fpn(cfg, spec.bands)
    relation = (ForegroundSceneRelation(backbone.c5_channels, cfg.fpn_channels, cfg.scale_aware, cfg.norm,
                                        cfg.scaled_relation) if cfg.fs_relation else None)
    decoder = Stride4Decoder(cfg.fpn_channels, cfg.decoder_channels, norm=cfg.norm, reduce=cfg.decoder_reduce)
    classifier = nn.Conv2d(cfg.decoder_channels, spec.num_classes + 1, 1)
    return FarSeg(backbone, relation, decoder, classifier, cfg.loss, cfg.annealing, cfg.annealing_steps, cfg.gamma)
