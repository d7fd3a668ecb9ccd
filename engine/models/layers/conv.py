"""Conv + GroupNorm + ReLU blocks: the norm that works with detection batches of 1-4 images."""
from __future__ import annotations

from torch import nn


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups, or one group per channel below 32 channels."""
    groups = 32 if channels % 32 == 0 else max(g for g in range(1, min(32, channels) + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def conv_norm_act(in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1,
                  norm: bool = True, act: bool = True) -> nn.Sequential:
    """[B, in, H, W] -> [B, out, H, W]: 'same' conv (bias only without norm), GroupNorm, ReLU."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size,
                                         padding=dilation * (kernel_size - 1) // 2, dilation=dilation, bias=not norm)]
    if norm:
        layers.append(group_norm(out_channels))
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)
