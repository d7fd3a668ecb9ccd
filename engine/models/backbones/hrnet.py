"""HRNetV2 backbone (Wang et al., TPAMI 2020) as HQ-ISNet uses it, for any number of input bands.

Four resolutions are kept in parallel and exchange information after every module:

- stem: 2 x (3x3 conv stride 2, 64 channels, norm, ReLU) -> stride 4;
- stage 1: `blocks` bottlenecks 64 -> 256 channels;
- stages 2/3/4: `modules` = (1, 4, 3) modules with 2/3/4 branches of `blocks` basic blocks each,
  branch widths (W, 2W, 4W, 8W) at strides (4, 8, 16, 32); a transition before each stage adds the
  new lowest-resolution branch with a 3x3 stride-2 conv of the previous lowest one;
- exchange unit after each module: output i = ReLU(sum_j f_ij(x_j)) with f_ii = identity,
  j > i (lower resolution): 1x1 conv + norm, then nearest upsampling to branch i's size,
  j < i (higher resolution): (i - j) x (3x3 stride-2 conv + norm), ReLU on all links but the last.

W18 / W32 / W40 give widths 18/36/72/144, 32/64/128/256, 40/80/160/320. The paper starts from
ImageNet weights with BatchNorm; none ship offline here, so training is from scratch and GroupNorm
(`norm="gn"`, gcd(32, channels) groups, >= 2 channels each: 18 channels -> 2 groups, 256 -> 32) is the default, because
detection batches of 1-4 images make batch statistics useless. `norm="bn"` gives the original.
"""
from __future__ import annotations

from collections import OrderedDict

import torch.nn.functional as F
from torch import Tensor, nn

from engine.models.layers.norm import make_norm

HRNET_WIDTHS = {"hrnet_w18": 18, "hrnet_w32": 32, "hrnet_w40": 40}


def _conv_norm(cin: int, cout: int, kernel: int, stride: int, norm: str, relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), make_norm(norm, cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity shortcut: [B,C,H,W] -> [B,C,H,W]."""

    def __init__(self, channels: int, norm: str) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_norm(channels, channels, 3, 1, norm, relu=True),
                                  _conv_norm(channels, channels, 3, 1, norm, relu=False))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(x + self.body(x))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 channels) with a projection shortcut when the width changes."""

    def __init__(self, cin: int, planes: int, norm: str) -> None:
        super().__init__()
        cout = planes * 4
        self.body = nn.Sequential(_conv_norm(cin, planes, 1, 1, norm, relu=True),
                                  _conv_norm(planes, planes, 3, 1, norm, relu=True),
                                  _conv_norm(planes, cout, 1, 1, norm, relu=False))
        self.shortcut = nn.Identity() if cin == cout else _conv_norm(cin, cout, 1, 1, norm, relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.shortcut(x) + self.body(x))


def _exchange_link(cin: int, cout: int, levels_down: int, norm: str) -> nn.Module:
    """Link from a branch to another `levels_down` resolutions lower (< 0: higher, = 0: identity)."""
    if levels_down == 0:
        return nn.Identity()
    if levels_down < 0:  # 1x1 conv here, the upsampling happens in forward (target size known there)
        return _conv_norm(cin, cout, 1, 1, norm, relu=False)
    convs = [_conv_norm(cin, cin, 3, 2, norm, relu=True) for _ in range(levels_down - 1)]
    return nn.Sequential(*convs, _conv_norm(cin, cout, 3, 2, norm, relu=False))


class HRModule(nn.Module):
    """Parallel branches of basic blocks, then the exchange unit: list of [B,C_i,H_i,W_i] -> same shapes."""

    def __init__(self, channels: list[int], blocks: int, norm: str) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(c, norm) for _ in range(blocks)]) for c in channels)
        self.exchange = nn.ModuleList(
            nn.ModuleList(_exchange_link(c_in, c_out, i - j, norm) for j, c_in in enumerate(channels))
            for i, c_out in enumerate(channels))
        self.relu = nn.ReLU(inplace=False)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        outputs = []
        for i, links in enumerate(self.exchange):
            fused = xs[i]
            for j, link in enumerate(links):
                if j == i:
                    continue
                y = link(xs[j])
                if j > i:
                    y = F.interpolate(y, size=xs[i].shape[-2:], mode="nearest")
                fused = fused + y
            outputs.append(self.relu(fused))
        return outputs


class Transition(nn.Module):
    """Adapts the previous stage's branches to the next stage's widths and adds one lower branch."""

    def __init__(self, previous: list[int], channels: list[int], norm: str) -> None:
        super().__init__()
        links: list[nn.Module] = []
        for i, c in enumerate(channels):
            if i < len(previous):
                same = previous[i] == c
                links.append(nn.Identity() if same else _conv_norm(previous[i], c, 3, 1, norm, relu=True))
            else:
                links.append(_conv_norm(previous[-1], c, 3, 2, norm, relu=True))
        self.links = nn.ModuleList(links)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        return [link(xs[min(i, len(xs) - 1)]) for i, link in enumerate(self.links)]


class _Stage(nn.Sequential):
    """A sequence of HRModules: list of branch tensors in, list out."""

    def forward(self, xs: list[Tensor]) -> list[Tensor]:  # type: ignore[override]
        for module in self:
            xs = module(xs)
        return xs


class HRNetFeatures(nn.Module):
    """HRNetV2 trunk returning {"c2": [B,W,H/4,W/4], "c3": [B,2W,H/8,..], "c4": [B,4W,H/16,..], "c5": [B,8W,H/32,..]}.

    `blocks` (4 in the paper) sets the bottlenecks of stage 1 and the basic blocks per branch;
    `modules` (1, 4, 3) the modules of stages 2/3/4. Smaller values give tiny test models.
    """

    def __init__(self, width: int = 18, in_channels: int = 1, blocks: int = 4,
                 modules: tuple[int, int, int] | list[int] = (1, 4, 3), norm: str = "gn") -> None:
        super().__init__()
        if blocks < 1 or len(modules) != 3 or min(modules) < 1:
            raise ValueError(f"HRNet needs blocks >= 1 and 3 module counts >= 1, got {blocks}, {list(modules)}")
        self.stem = nn.Sequential(_conv_norm(in_channels, 64, 3, 2, norm, relu=True),
                                  _conv_norm(64, 64, 3, 2, norm, relu=True))
        self.layer1 = nn.Sequential(Bottleneck(64, 64, norm), *[Bottleneck(256, 64, norm) for _ in range(blocks - 1)])
        widths = [width * 2**i for i in range(4)]
        self.transitions = nn.ModuleList()
        self.stages = nn.ModuleList()
        previous = [256]
        for n_branches, n_modules in zip((2, 3, 4), modules):
            channels = widths[:n_branches]
            self.transitions.append(Transition(previous, channels, norm))
            self.stages.append(_Stage(*[HRModule(channels, blocks, norm) for _ in range(n_modules)]))
            previous = channels
        self.out_channels = widths
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.GroupNorm | nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        xs = [self.layer1(self.stem(x))]
        for transition, stage in zip(self.transitions, self.stages):
            xs = stage(transition(xs))
        return OrderedDict(zip(("c2", "c3", "c4", "c5"), xs))
