"""SOLOv2 heads (Wang et al., NeurIPS 2020): kernel + category branches on S x S grids, unified mask feature.

Kernel branch per level: features + 2 normalised coordinate channels (CoordConv), resized to S x S,
`head_convs` x (3x3, GroupNorm, ReLU), 3x3 -> E: one dynamic 1x1 kernel of E weights per grid cell.
Category branch: the same resized features without the coordinates, `head_convs` x (3x3, GN, ReLU),
3x3 -> C logits (bias prior 0.01). Both are shared over the pyramid levels.
Mask feature branch: P2..P5 each brought to stride 4 by repeated (3x3, GN, ReLU, bilinear 2x) with the
coordinates added on the coarsest input only, summed, then 1x1 -> E (GN, ReLU).
`dcn` puts DCNv2 (engine.models.layers.dcnv2) in place of the plain 3x3 tower convs: "kernel" (FACENet's
paper: the kernel branch) or "towers" (SOLOv2's DCN variant: kernel and category towers).
"""
from __future__ import annotations

import math
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.models.layers.conv import conv_norm_act
from engine.models.layers.dcnv2 import ModulatedDeformConv2d
from engine.models.layers.norm import group_norm

DCNPlace = Literal["none", "kernel", "towers"]
DCN_PLACES = get_args(DCNPlace)


def coordinate_channels(x: Tensor) -> Tensor:
    """[B, C, H, W] -> [B, 2, H, W]: x then y pixel-centre coordinates normalised to [-1, 1]."""
    b, _, h, w = x.shape
    ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
    xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y]).expand(b, -1, -1, -1)


def _tower(in_channels: int, channels: int, depth: int, deformable: bool) -> nn.Sequential:
    """`depth` x (3x3 conv or DCNv2, GroupNorm, ReLU): [B, in, S, S] -> [B, channels, S, S]."""
    layers: list[nn.Module] = []
    for k in range(depth):
        cin = in_channels if k == 0 else channels
        conv = (ModulatedDeformConv2d(cin, channels, 3, padding=1, bias=False) if deformable
                else nn.Conv2d(cin, channels, 3, padding=1, bias=False))
        nn.init.normal_(conv.weight, std=0.01)
        layers += [conv, group_norm(channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class KernelCategoryHead(nn.Module):
    """P2..P6 [B, D, Hi, Wi] -> per level kernels [B, E, S, S] and category logits [B, C, S, S]."""

    def __init__(self, in_channels: int, num_classes: int, kernel_channels: int, grids: tuple[int, ...],
                 head_channels: int = 512, head_convs: int = 4, dcn: str = "none", prior: float = 0.01) -> None:
        super().__init__()
        if dcn not in DCN_PLACES:
            raise ValueError(f"unknown dcn placement '{dcn}'; choose one of {', '.join(DCN_PLACES)}")
        self.grids = tuple(grids)
        self.kernel_tower = _tower(in_channels + 2, head_channels, head_convs, dcn in ("kernel", "towers"))
        self.category_tower = _tower(in_channels, head_channels, head_convs, dcn == "towers")
        self.kernel_out = nn.Conv2d(head_channels, kernel_channels, 3, padding=1)
        self.category_out = nn.Conv2d(head_channels, num_classes, 3, padding=1)
        for conv in (self.kernel_out, self.category_out):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.constant_(self.category_out.bias, -math.log((1 - prior) / prior))

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        if len(features) != len(self.grids):
            raise ValueError(f"{len(features)} pyramid levels for {len(self.grids)} grids")
        kernels, categories = [], []
        for feature, grid in zip(_level_inputs(features), self.grids):
            with_coords = torch.cat([feature, coordinate_channels(feature)], dim=1)
            with_coords = F.interpolate(with_coords, size=(grid, grid), mode="bilinear", align_corners=False)
            kernels.append(self.kernel_out(self.kernel_tower(with_coords)))
            categories.append(self.category_out(self.category_tower(with_coords[:, :-2])))
        return kernels, categories


def _level_inputs(features: list[Tensor]) -> list[Tensor]:
    """SOLOv2's level resizing: P2 down to P3's size, the last level (P6) up to the one before (P5)."""
    out = list(features)
    out[0] = F.interpolate(features[0], size=features[1].shape[-2:], mode="bilinear", align_corners=False)
    out[-1] = F.interpolate(features[-1], size=features[-2].shape[-2:], mode="bilinear", align_corners=False)
    return out


class MaskFeatureBranch(nn.Module):
    """P2..P5 [B, D, H/4 .. H/32] -> unified mask feature [B, E, H/4, W/4]."""

    def __init__(self, in_channels: int, channels: int = 128, out_channels: int = 256, levels: int = 4,
                 relu_out: bool = True) -> None:
        super().__init__()
        self.levels = nn.ModuleList()
        for level in range(levels):
            if level == 0:
                self.levels.append(conv_norm_act(in_channels, channels, 3))
                continue
            steps: list[nn.Module] = []
            for step in range(level):
                cin = channels if step else in_channels + (2 if level == levels - 1 else 0)
                steps += [conv_norm_act(cin, channels, 3),
                          nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)]
            self.levels.append(nn.Sequential(*steps))
        self.project = conv_norm_act(channels, out_channels, 1, act=relu_out)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)

    def forward(self, features: list[Tensor]) -> Tensor:
        if len(features) != len(self.levels):
            raise ValueError(f"mask feature branch takes {len(self.levels)} levels, got {len(features)}")
        coarsest = features[-1]
        inputs = features[:-1] + [torch.cat([coarsest, coordinate_channels(coarsest)], dim=1)]
        summed = sum(branch(x) for branch, x in zip(self.levels, inputs))
        return self.project(summed)
