"""Semantic enhancement module (SEM) of FACENet (Zhao et al., ITC 2025, Eq. 6-7) on the trunk's C2.

    x = 1x1(C2);  SEM(C2) = 1x1(conv3x3_d1(x) + conv3x3_d2(x) + conv3x3_d3(x)) + C2

Choices the paper leaves open (documented here):
- SEM keeps C2's channel count and sits between the trunk and the neck, so the neck's own lateral conv
  follows it; the module plugs into either neck (FPN or FACE-FPN), as the ablation rows need.
- x has C2's width; each dilated branch is conv + GroupNorm, their sum goes through a ReLU.
- The final 1x1 is followed by a GroupNorm whose scale starts at zero: at initialisation SEM is the
  identity, and the residual's size is set by that learnt scale. (A bare zero-initialised 1x1, as first
  built, let one large-gradient step make the residual on C2 large: P2 and the mask features then
  saturated every mask logit negative and the mask loss stayed at its maximum. On SSDD with SGD 0.01 this
  killed FACENet's mask branch within 20 iterations, also at lr 0.001 and with torchvision's DCN; the
  same model without SEM trained.)
"""
from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from engine.models.layers.conv import conv_norm_act


class SemanticEnhancement(nn.Module):
    """[B, C, H, W] -> [B, C, H, W]: three parallel atrous 3x3 convs (dilations 1, 2, 3) and a residual."""

    def __init__(self, channels: int, dilations: tuple[int, ...] = (1, 2, 3)) -> None:
        super().__init__()
        self.reduce = conv_norm_act(channels, channels, 1)
        self.branches = nn.ModuleList(conv_norm_act(channels, channels, 3, dilation=d, act=False) for d in dilations)
        self.project = conv_norm_act(channels, channels, 1, act=False)
        nn.init.zeros_(self.project[1].weight)  # GroupNorm scale 0: identity at initialisation

    def forward(self, c2: Tensor) -> Tensor:
        x = self.reduce(c2)
        summed = sum(branch(x) for branch in self.branches)
        return self.project(summed.relu()) + c2


class TrunkWithSEM(nn.Module):
    """A trunk returning {"c2".."c5"} whose C2 goes through SEM; same `out_channels` as the trunk."""

    def __init__(self, trunk: nn.Module, out_channels: list[int]) -> None:
        super().__init__()
        self.trunk = trunk
        self.sem = SemanticEnhancement(out_channels[0])
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        features = self.trunk(x)
        features["c2"] = self.sem(features["c2"])
        return features
