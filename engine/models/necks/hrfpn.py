"""HRFPN (HQ-ISNet, after HRNetV2p): one high-resolution map, pooled into a 5-level pyramid.

Every branch is upsampled (bilinear) to the highest resolution and concatenated (W18: 18+36+72+144
= 270 channels, W32: 480, W40: 600); a 1x1 conv reduces them to `out_channels`; level i = 0..4 is
that map average-pooled with kernel = stride = 2^i (ceil mode, so the level sizes are those of
torchvision's FPN: ceil(H / stride)), then one 3x3 conv per level. There is no top-down path.
The outputs carry the FPN's keys ("c2".."c5", "pool" = P2..P6, strides 4..64), so the RPN and
MultiScaleRoIAlign(["c2", "c3", "c4", "c5"]) take them unchanged. `norm="gn"` adds GroupNorm after
each conv (training from scratch); `norm="none"` is the paper's plain convs.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.models.layers.norm import make_norm

LEVEL_NAMES = ("c2", "c3", "c4", "c5", "pool")


def _conv(cin: int, cout: int, kernel: int, norm: str) -> nn.Module:
    conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=norm == "none")
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv if norm == "none" else nn.Sequential(conv, make_norm(norm, cout))


class HRFPN(nn.Module):
    """Branches [B,C_i,H/2^(i+2),W/2^(i+2)] (i = 0..3) -> {"c2": [B,out,H/4,W/4], ..., "pool": [B,out,H/64,W/64]}."""

    def __init__(self, in_channels: list[int], out_channels: int = 256, norm: str = "gn") -> None:
        super().__init__()
        if norm not in ("gn", "none"):
            raise ValueError(f"unknown HRFPN norm '{norm}'; choose one of gn, none")
        self.reduction = _conv(sum(in_channels), out_channels, 1, norm)
        self.level_convs = nn.ModuleList(_conv(out_channels, out_channels, 3, norm) for _ in LEVEL_NAMES)
        self.out_channels = out_channels

    def forward(self, branches: OrderedDict[str, Tensor]) -> OrderedDict[str, Tensor]:
        maps = list(branches.values())
        size = maps[0].shape[-2:]
        upsampled = [maps[0]] + [F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps[1:]]
        fused = self.reduction(torch.cat(upsampled, dim=1))
        levels = OrderedDict()
        for i, (name, conv) in enumerate(zip(LEVEL_NAMES, self.level_convs)):
            pooled = F.avg_pool2d(fused, 2**i, 2**i, ceil_mode=True) if i else fused
            levels[name] = conv(pooled)
        return levels


class BackboneWithHRFPN(nn.Module):
    """Trunk (C2..C5) + HRFPN -> {"c2".."c5", "pool"} with `out_channels` channels (P2..P6)."""

    def __init__(self, body: nn.Module, in_channels: list[int], out_channels: int, norm: str) -> None:
        super().__init__()
        self.body = body
        self.fpn = HRFPN(in_channels, out_channels, norm)
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return self.fpn(self.body(x))
