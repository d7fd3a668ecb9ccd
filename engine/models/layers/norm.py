"""Normalisation layers. Three GroupNorm group-count rules live side by side because trained checkpoints
depend on them (the group count is not in a state_dict, yet it changes every output):

- `group_norm`: 32 groups, or the largest divisor of the channels below 32 (detection FPN and heads, the
  ResNet trunk, SOLOv2 heads, FACE-FPN, SEM);
- `gcd_group_norm`: gcd(32, channels) groups, halved until each holds >= 2 channels (HRNet, HRFPN, the
  cascade mask heads);
- `paired_group_norm`: the largest divisor of the channels up to min(32, channels / 2) (the semantic models).

Groups of >= 2 channels keep a 1x1 map (the stride-32 level of a 32 px tile) from being normalised to 0.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from torch import nn

Norm = Literal["gn", "bn"]


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups, or the largest divisor of `channels` below 32 (one channel per group below 32)."""
    groups = 32 if channels % 32 == 0 else max(g for g in range(1, min(32, channels) + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def gcd_group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with gcd(32, channels) groups, halved until each group holds >= 2 channels."""
    groups = math.gcd(32, channels)
    while groups > 1 and channels // groups < 2:
        groups //= 2
    return nn.GroupNorm(groups, channels)


def paired_group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with the largest divisor of `channels` up to min(32, channels / 2) groups."""
    groups = max(g for g in range(1, min(32, max(channels // 2, 1)) + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def make_norm(kind: str, channels: int, gn: Callable[[int], nn.GroupNorm] = gcd_group_norm) -> nn.Module:
    """"gn" -> `gn(channels)` (default: gcd_group_norm), "bn" -> BatchNorm2d; ValueError naming the valid kinds."""
    if kind == "gn":
        return gn(channels)
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"unknown norm '{kind}'; choose one of gn, bn")
