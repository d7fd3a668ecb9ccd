"""Feature pyramid networks (Lin et al.) over a trunk returning {"c2".."c5"}: torchvision's FPN, wrapped twice.

- `BackboneWithFPN` (detectors): P2..P6 under the keys {"c2".."c5", "pool"} (P6 = max pool of P5), optional
  GroupNorm on the laterals and outputs; `out_channels` as torchvision's detectors expect.
- `TrunkFPN` (semantic models): P2..P5 under {"p2".."p5"}, no norm, plus the trunk's C5 (FarSeg's scene vector).
Both keep the attribute names `body` (the trunk) and `fpn`, which checkpoints' state_dict keys carry.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Literal, get_args

from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from engine.models.layers.norm import group_norm

FPNNorm = Literal["gn", "none"]  # the necks' norm switch: GroupNorm or none
FPN_NORMS = get_args(FPNNorm)


class BackboneWithFPN(nn.Module):
    """Trunk (C2..C5) + FPN: [B,bands,H,W] -> {"c2".."c5", "pool"} = P2..P6 with `out_channels` channels.

    `norm`: "gn" (GroupNorm, `group_norm` groups, after the lateral and output convs) | "none".
    """

    def __init__(self, body: nn.Module, in_channels: list[int], out_channels: int, norm: str = "gn") -> None:
        super().__init__()
        if norm not in FPN_NORMS:
            raise ValueError(f"unknown FPN norm '{norm}'; choose one of {', '.join(FPN_NORMS)}")
        self.body = body
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, LastLevelMaxPool(),
                                         norm_layer=group_norm if norm == "gn" else None)
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return self.fpn(self.body(x))


class TrunkFPN(nn.Module):
    """Trunk + FPN (1x1 laterals, 3x3 outputs, nearest top-down, no norm):
    [B,bands,H,W] -> ({"p2".."p5": [B,ch,H/4..H/32,...]}, C5 [B,C5ch,H/32,W/32]).

    H, W must be multiples of 32 (engine.models.semantic.common.pad_batch does that). `out_channels` = FPN
    width, `c5_channels` = C5 width.
    """

    def __init__(self, body: nn.Module, in_channels: list[int], out_channels: int) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels)
        self.out_channels = out_channels
        self.c5_channels = in_channels[-1]

    def forward(self, x: Tensor) -> tuple[OrderedDict[str, Tensor], Tensor]:
        features = self.body(x)
        pyramid = self.fpn(features)
        return OrderedDict((f"p{k[1]}", v) for k, v in pyramid.items()), features["c5"]
